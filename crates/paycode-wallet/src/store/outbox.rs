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

/// Whether any undelivered notification is due at `now_ms` (an idle pass looks before it
/// claims, so that it costs no write).
pub(crate) fn any_due(conn: &Connection, now_ms: i64) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM notify_outbox \
             WHERE delivered_at_ms IS NULL AND next_attempt_at_ms <= ?1)",
        )?
        .query_row([now_ms], |r| r.get(0))?)
}

/// Claims up to `limit` undelivered notifications due at `now_ms`, earliest first, by pushing
/// their next attempt to `lease_until_ms`: another process on the same store skips them
/// (PostgreSQL: rows another claim holds are skipped, not waited for), and a process that dies
/// mid-attempt leaves them to be taken over when the lease ends.
pub(crate) fn claim_due(
    conn: &Connection,
    now_ms: i64,
    lease_until_ms: i64,
    limit: usize,
) -> Result<Vec<DueNotification>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut st = conn.prepare_cached(&format!(
        "SELECT notify_id, payment_request_id, url, body, n_attempts FROM notify_outbox \
         WHERE delivered_at_ms IS NULL AND next_attempt_at_ms <= ?1 \
         ORDER BY next_attempt_at_ms LIMIT ?2{}",
        conn.skip_locked()
    ))?;
    let rows = st.query_map(params![now_ms, limit], |r| {
        Ok(DueNotification {
            notify_id: r.get(0)?,
            payment_request_id: r.get(1)?,
            url: r.get(2)?,
            body: r.get(3)?,
            n_attempts: r.get(4)?,
        })
    })?;
    let due = rows.collect::<Result<Vec<_>, _>>()?;
    let mut lease = conn
        .prepare_cached("UPDATE notify_outbox SET next_attempt_at_ms = ?2 WHERE notify_id = ?1")?;
    for n in &due {
        lease.execute(params![n.notify_id, lease_until_ms])?;
    }
    Ok(due)
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
