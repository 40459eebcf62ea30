//! The `payments`, `user_daily` and `refunds` tables.

use super::{DAY_MS, StoreError};
use crate::payment_state::PayState;
use paycode_core::ResultCode;
use paycode_db::sql::types::{
    FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, Type, ValueRef,
};
use paycode_db::sql::{self, Connection, OptionalExtension, Row, params};

impl PayState {
    fn as_stored(self) -> &'static str {
        match self {
            PayState::Processing => "PROCESSING",
            PayState::Success => "SUCCESS",
            PayState::Fail => "FAIL",
            PayState::Tombstone => "CANCELLED",
        }
    }
}

impl ToSql for PayState {
    fn to_sql(&self) -> sql::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_stored()))
    }
}

/// A `state` the wallet never writes fails the read (and becomes [`StoreError::Corrupt`]).
impl FromSql for PayState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<PayState> {
        match value.as_str()? {
            "PROCESSING" => Ok(PayState::Processing),
            "SUCCESS" => Ok(PayState::Success),
            "FAIL" => Ok(PayState::Fail),
            "CANCELLED" => Ok(PayState::Tombstone),
            other => Err(FromSqlError::Other(
                format!("payment state {other:?}").into(),
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct PaymentRow {
    pub payment_request_id: String,
    pub payment_id: String,
    pub key_hash: Option<String>,
    pub state: PayState,
    pub result_code: ResultCode,
    pub result_message: String,
    pub user_name: Option<String>,
    pub customer_id: Option<String>,
    pub device_id: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub payment_amount_minor: i64,
    pub payment_currency: String,
    pub quote_price: Option<String>,
    pub merchant_name: String,
    pub store_name: Option<String>,
    pub notify_url: Option<String>,
    pub challenge_reason: Option<String>,
    pub created_at_ms: i64,
    pub deadline_ms: Option<i64>,
    pub paid_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub cancelled_at_ms: Option<i64>,
    pub reversed_at_ms: Option<i64>,
    pub refunded_minor: i64,
}

const PAY_COLS: &str = "payment_request_id, payment_id, key_hash, state, result_code, \
    result_message, user_name, customer_id, device_id, amount_minor, currency, \
    payment_amount_minor, payment_currency, quote_price, merchant_name, store_name, notify_url, \
    challenge_reason, created_at_ms, deadline_ms, paid_at_ms, finished_at_ms, cancelled_at_ms, \
    reversed_at_ms, refunded_minor";

/// A result code the core does not know fails the read (and becomes [`StoreError::Corrupt`]).
fn result_code_at(r: &Row<'_>, column: usize) -> sql::Result<ResultCode> {
    let text: String = r.get(column)?;
    ResultCode::parse(&text).ok_or_else(|| {
        sql::Error::FromSqlConversionFailure(
            column,
            Type::Text,
            format!("result code {text:?}").into(),
        )
    })
}

fn payment_from_row(r: &Row<'_>) -> sql::Result<PaymentRow> {
    Ok(PaymentRow {
        payment_request_id: r.get(0)?,
        payment_id: r.get(1)?,
        key_hash: r.get(2)?,
        state: r.get(3)?,
        result_code: result_code_at(r, 4)?,
        result_message: r.get(5)?,
        user_name: r.get(6)?,
        customer_id: r.get(7)?,
        device_id: r.get(8)?,
        amount_minor: r.get(9)?,
        currency: r.get(10)?,
        payment_amount_minor: r.get(11)?,
        payment_currency: r.get(12)?,
        quote_price: r.get(13)?,
        merchant_name: r.get(14)?,
        store_name: r.get(15)?,
        notify_url: r.get(16)?,
        challenge_reason: r.get(17)?,
        created_at_ms: r.get(18)?,
        deadline_ms: r.get(19)?,
        paid_at_ms: r.get(20)?,
        finished_at_ms: r.get(21)?,
        cancelled_at_ms: r.get(22)?,
        reversed_at_ms: r.get(23)?,
        refunded_minor: r.get(24)?,
    })
}

fn load_where(
    conn: &Connection,
    clause: &str,
    args: impl sql::Params,
) -> Result<Option<PaymentRow>, StoreError> {
    // Locked in a write unit on PostgreSQL: confirm, cancel, expiry and refund of one payment
    // decide one after the other.
    let sql = format!(
        "SELECT {PAY_COLS} FROM payments WHERE {clause}{}",
        conn.for_update()
    );
    Ok(conn.query_row(&sql, args, payment_from_row).optional()?)
}

/// The payment of a `paymentRequestId`.
pub(crate) fn load(conn: &Connection, prid: &str) -> Result<Option<PaymentRow>, StoreError> {
    load_where(conn, "payment_request_id = ?1", params![prid])
}

/// A user's payment by its wallet id (the challenge id the phone sees).
pub(crate) fn load_of_user(
    conn: &Connection,
    payment_id: &str,
    user: &str,
) -> Result<Option<PaymentRow>, StoreError> {
    load_where(
        conn,
        "payment_id = ?1 AND user_name = ?2",
        params![payment_id, user],
    )
}

/// A user's challenges still waiting at `now_ms`, oldest first, at most 100.
pub(crate) fn pending_of_user(
    conn: &Connection,
    user: &str,
    now_ms: i64,
) -> Result<Vec<PaymentRow>, StoreError> {
    let sql = format!(
        "SELECT {PAY_COLS} FROM payments WHERE user_name = ?1 AND state = 'PROCESSING' \
         AND deadline_ms > ?2 ORDER BY created_at_ms LIMIT 100"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map(params![user, now_ms], payment_from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Ids of the challenges whose deadline is at or before `now_ms`, earliest first.
pub(crate) fn due_challenge_ids(
    conn: &Connection,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut st = conn.prepare_cached(
        "SELECT payment_request_id FROM payments WHERE state = 'PROCESSING' \
         AND deadline_ms <= ?1 ORDER BY deadline_ms LIMIT ?2",
    )?;
    let rows = st.query_map(params![now_ms, limit], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<String>, _>>()?)
}

/// One payment attempt of a user, for the history.
pub(crate) struct UserPayment {
    pub state: PayState,
    pub amount_minor: i64,
    pub merchant_name: String,
    pub payment_request_id: String,
    pub created_at_ms: i64,
}

/// A user's payment attempts, newest first.
pub(crate) fn of_user_newest(
    conn: &Connection,
    user: &str,
    limit: usize,
) -> Result<Vec<UserPayment>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut st = conn.prepare_cached(
        "SELECT state, amount_minor, merchant_name, payment_request_id, created_at_ms \
         FROM payments WHERE user_name = ?1 ORDER BY created_at_ms DESC LIMIT ?2",
    )?;
    let rows = st.query_map(params![user, limit], |r| {
        Ok(UserPayment {
            state: r.get(0)?,
            amount_minor: r.get(1)?,
            merchant_name: r.get(2)?,
            payment_request_id: r.get(3)?,
            created_at_ms: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A payment's share of its user's daily total: `(user, UTC day, amount)` while it is paid and
/// not reversed.
fn daily_share(p: &PaymentRow) -> Option<(String, i64, i64)> {
    match (
        p.state,
        p.reversed_at_ms,
        p.paid_at_ms,
        p.user_name.as_deref(),
    ) {
        (PayState::Success, None, Some(paid), Some(user)) => {
            Some((user.to_string(), paid.div_euclid(DAY_MS), p.amount_minor))
        }
        _ => None,
    }
}

fn add_daily(
    conn: &Connection,
    share: Option<(String, i64, i64)>,
    sign: i64,
) -> Result<(), StoreError> {
    if let Some((user, day, amount)) = share {
        conn.execute(
            "INSERT INTO user_daily (user_name, day, paid_minor) VALUES (?1, ?2, ?3) \
             ON CONFLICT (user_name, day) DO UPDATE SET \
             paid_minor = user_daily.paid_minor + excluded.paid_minor",
            params![user, day, sign * amount],
        )?;
    }
    Ok(())
}

/// What the user paid on the UTC day of `now_ms`, net of reversals.
pub(crate) fn paid_today(conn: &Connection, user: &str, now_ms: i64) -> Result<i64, StoreError> {
    Ok(conn
        .query_row(
            "SELECT paid_minor FROM user_daily WHERE user_name = ?1 AND day = ?2",
            params![user, now_ms.div_euclid(DAY_MS)],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

/// Inserts a new payment and its share of the user's daily total.
pub(crate) fn insert(conn: &Connection, p: &PaymentRow) -> Result<(), StoreError> {
    add_daily(conn, daily_share(p), 1)?;
    conn.execute(
        &format!(
            "INSERT INTO payments ({PAY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
             ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)"
        ),
        params![
            p.payment_request_id,
            p.payment_id,
            p.key_hash,
            p.state,
            p.result_code.as_str(),
            p.result_message,
            p.user_name,
            p.customer_id,
            p.device_id,
            p.amount_minor,
            p.currency,
            p.payment_amount_minor,
            p.payment_currency,
            p.quote_price,
            p.merchant_name,
            p.store_name,
            p.notify_url,
            p.challenge_reason,
            p.created_at_ms,
            p.deadline_ms,
            p.paid_at_ms,
            p.finished_at_ms,
            p.cancelled_at_ms,
            p.reversed_at_ms,
            p.refunded_minor,
        ],
    )?;
    Ok(())
}

/// Writes a payment's mutable columns, keeping the user's daily total in step.
pub(crate) fn update(conn: &Connection, p: &PaymentRow) -> Result<(), StoreError> {
    let before = load(conn, &p.payment_request_id)?.and_then(|b| daily_share(&b));
    let after = daily_share(p);
    if before != after {
        add_daily(conn, before, -1)?;
        add_daily(conn, after, 1)?;
    }
    let n = conn.execute(
        "UPDATE payments SET state = ?2, result_code = ?3, result_message = ?4, paid_at_ms = ?5, \
         finished_at_ms = ?6, cancelled_at_ms = ?7, reversed_at_ms = ?8, refunded_minor = ?9 \
         WHERE payment_request_id = ?1",
        params![
            p.payment_request_id,
            p.state,
            p.result_code.as_str(),
            p.result_message,
            p.paid_at_ms,
            p.finished_at_ms,
            p.cancelled_at_ms,
            p.reversed_at_ms,
            p.refunded_minor,
        ],
    )?;
    if n != 1 {
        return Err(StoreError::NotFound(format!(
            "payment {}",
            p.payment_request_id
        )));
    }
    Ok(())
}

/// A refund the wallet made.
pub(crate) struct RefundRow {
    pub refund_id: String,
    pub payment_request_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub created_at_ms: i64,
}

pub(crate) fn load_refund(
    conn: &Connection,
    refund_request_id: &str,
) -> Result<Option<RefundRow>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT refund_id, payment_request_id, amount_minor, currency, created_at_ms \
             FROM refunds WHERE refund_request_id = ?1",
            params![refund_request_id],
            |x| {
                Ok(RefundRow {
                    refund_id: x.get(0)?,
                    payment_request_id: x.get(1)?,
                    amount_minor: x.get(2)?,
                    currency: x.get(3)?,
                    created_at_ms: x.get(4)?,
                })
            },
        )
        .optional()?)
}

pub(crate) fn insert_refund(
    conn: &Connection,
    refund_request_id: &str,
    r: &RefundRow,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO refunds (refund_request_id, refund_id, payment_request_id, amount_minor, \
         currency, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            refund_request_id,
            r.refund_id,
            r.payment_request_id,
            r.amount_minor,
            r.currency,
            r.created_at_ms
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::conn;
    use paycode_core::Currency;

    const DAY_START_MS: i64 = 20_000 * DAY_MS;

    fn paid(prid: &str, user: &str, amount_minor: i64) -> PaymentRow {
        let currency = Currency::parse("SGD").unwrap();
        PaymentRow {
            state: PayState::Success,
            user_name: Some(user.to_string()),
            amount_minor,
            paid_at_ms: Some(DAY_START_MS + 1_000),
            ..PaymentRow::unseen(prid, format!("WP-{prid}"), &currency, DAY_START_MS)
        }
    }

    #[test]
    fn a_payment_reads_back_as_written() {
        let c = conn();
        let mut p = paid("P1", "alice", 500);
        p.challenge_reason = Some("why".to_string());
        insert(&c, &p).unwrap();
        let back = load(&c, "P1").unwrap().unwrap();
        assert_eq!(format!("{back:?}"), format!("{p:?}"));
        assert!(load(&c, "P2").unwrap().is_none());
        assert_eq!(
            load_of_user(&c, "WP-P1", "alice").unwrap().unwrap().state,
            PayState::Success
        );
        assert!(load_of_user(&c, "WP-P1", "bob").unwrap().is_none());
    }

    /// The stored state is the four words the wallet writes, and nothing else reads back.
    #[test]
    fn a_stored_state_the_wallet_never_writes_is_corrupt() {
        let c = conn();
        insert(&c, &paid("P1", "alice", 500)).unwrap();
        for (state, want) in [
            ("PROCESSING", Some(PayState::Processing)),
            ("SUCCESS", Some(PayState::Success)),
            ("FAIL", Some(PayState::Fail)),
            ("CANCELLED", Some(PayState::Tombstone)),
            ("PAID", None),
            ("success", None),
        ] {
            c.execute("UPDATE payments SET state = ?1", params![state])
                .unwrap();
            match (load(&c, "P1"), want) {
                (Ok(Some(p)), Some(want)) => assert_eq!(p.state, want),
                (Err(StoreError::Corrupt(why)), None) => assert!(why.contains(state), "{why}"),
                (other, _) => panic!("{state}: {other:?}"),
            }
        }
        c.execute("UPDATE payments SET state = 7", []).unwrap();
        assert!(matches!(load(&c, "P1"), Err(StoreError::Corrupt(_))));
        c.execute(
            "UPDATE payments SET state = 'FAIL', result_code = 'NO_SUCH_CODE'",
            [],
        )
        .unwrap();
        match load(&c, "P1") {
            Err(StoreError::Corrupt(why)) => assert!(why.contains("NO_SUCH_CODE"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    /// `user_daily` follows the payment rows it summarises: a paid payment counts, a reversed
    /// one no longer does.
    #[test]
    fn the_daily_total_follows_inserts_and_updates() {
        let c = conn();
        let now_ms = DAY_START_MS + 5_000;
        insert(&c, &paid("P1", "alice", 500)).unwrap();
        let mut p2 = paid("P2", "alice", 300);
        insert(&c, &p2).unwrap();
        assert_eq!(paid_today(&c, "alice", now_ms).unwrap(), 800);
        assert_eq!(paid_today(&c, "alice", now_ms + DAY_MS).unwrap(), 0);
        assert_eq!(paid_today(&c, "bob", now_ms).unwrap(), 0);
        p2.reversed_at_ms = Some(now_ms);
        update(&c, &p2).unwrap();
        assert_eq!(paid_today(&c, "alice", now_ms).unwrap(), 500);
        update(&c, &p2).unwrap();
        assert_eq!(paid_today(&c, "alice", now_ms).unwrap(), 500);
    }

    #[test]
    fn keys_are_named_in_errors() {
        let c = conn();
        insert(&c, &paid("P1", "alice", 500)).unwrap();
        let mut same_prid = paid("P1", "alice", 500);
        same_prid.payment_id = "WP-other".to_string();
        match insert(&c, &same_prid) {
            Err(StoreError::Unique { key }) => assert_eq!(key, "payments.payment_request_id"),
            other => panic!("{other:?}"),
        }
        let mut other_prid_same_id = paid("P2", "alice", 500);
        other_prid_same_id.payment_id = "WP-P1".to_string();
        match insert(&c, &other_prid_same_id) {
            Err(StoreError::Unique { key }) => assert_eq!(key, "payments.payment_id"),
            other => panic!("{other:?}"),
        }
        match update(&c, &paid("P9", "alice", 1)) {
            Err(StoreError::NotFound(what)) => assert_eq!(what, "payment P9"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pending_and_due_challenges_are_selected_by_deadline() {
        let c = conn();
        let currency = Currency::parse("SGD").unwrap();
        for (prid, deadline_ms) in [("C1", 2_000), ("C2", 1_000), ("C3", 5_000)] {
            let p = PaymentRow {
                user_name: Some("alice".to_string()),
                deadline_ms: Some(deadline_ms),
                ..PaymentRow::unseen(prid, format!("WP-{prid}"), &currency, 0)
            };
            insert(&c, &p).unwrap();
        }
        insert(&c, &paid("P1", "alice", 500)).unwrap();
        assert_eq!(due_challenge_ids(&c, 2_000, 10).unwrap(), ["C2", "C1"]);
        assert_eq!(due_challenge_ids(&c, 2_000, 1).unwrap(), ["C2"]);
        let pending: Vec<String> = pending_of_user(&c, "alice", 2_000)
            .unwrap()
            .into_iter()
            .map(|p| p.payment_request_id)
            .collect();
        assert_eq!(pending, ["C3"]);
    }
}
