//! The `notify_outbox` table: `notifyPayment` bodies waiting for the acquirer's acknowledgement.

use super::StoreError;
use paycode_db::sql::{Connection, params};

pub(crate) fn enqueue(
    conn: &Connection,
    payment_request_id: &str,
    url: &str,
    body: &str,
    next_attempt_at_ms: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO notify_outbox (payment_request_id, url, body, next_attempt_at_ms) \
         VALUES (?1, ?2, ?3, ?4)",
        params![payment_request_id, url, body, next_attempt_at_ms],
    )?;
    Ok(())
}

pub(crate) struct DueNotification {
    pub notify_id: i64,
    pub payment_request_id: String,
    pub url: String,
    pub body: String,
    pub n_attempts: u32,
}

/// Undelivered notifications due at `now_ms`, earliest first.
pub(crate) fn due(
    conn: &Connection,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<DueNotification>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut st = conn.prepare_cached(
        "SELECT notify_id, payment_request_id, url, body, n_attempts FROM notify_outbox \
         WHERE delivered_at_ms IS NULL AND next_attempt_at_ms <= ?1 \
         ORDER BY next_attempt_at_ms LIMIT ?2",
    )?;
    let rows = st.query_map(params![now_ms, limit], |r| {
        Ok(DueNotification {
            notify_id: r.get(0)?,
            payment_request_id: r.get(1)?,
            url: r.get(2)?,
            body: r.get(3)?,
            n_attempts: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(crate) fn mark_delivered(
    conn: &Connection,
    notify_id: i64,
    n_attempts: u32,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE notify_outbox SET n_attempts = ?2, delivered_at_ms = ?3, last_error = NULL \
         WHERE notify_id = ?1",
        params![notify_id, n_attempts, now_ms],
    )?;
    Ok(())
}

pub(crate) fn schedule_retry(
    conn: &Connection,
    notify_id: i64,
    n_attempts: u32,
    next_attempt_at_ms: i64,
    error: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE notify_outbox SET n_attempts = ?2, next_attempt_at_ms = ?3, \
         last_error = ?4 WHERE notify_id = ?1",
        params![notify_id, n_attempts, next_attempt_at_ms, error],
    )?;
    Ok(())
}

pub(crate) fn n_undelivered(conn: &Connection) -> Result<usize, StoreError> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM notify_outbox WHERE delivered_at_ms IS NULL",
        [],
        |r| r.get(0),
    )?;
    Ok(usize::try_from(n).unwrap_or(0))
}
