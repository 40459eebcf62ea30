//! The `outbox` of merchant notifications and the `payment_events` timeline.

use super::{StoreResult, corrupt_column, ms_at, opt_ms_at};
use paycode_db::sql::{self, Connection, OptionalExtension, Row, params};

/// Where a merchant notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationStatus {
    /// Waiting for its next attempt (or leased by a worker until `next_attempt_ms`).
    Pending,
    /// The merchant acknowledged it.
    Delivered,
    /// Every attempt of the schedule failed; an operator may resend it.
    Parked,
}

impl NotificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Delivered => "DELIVERED",
            Self::Parked => "PARKED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(Self::Pending),
            "DELIVERED" => Some(Self::Delivered),
            "PARKED" => Some(Self::Parked),
            _ => None,
        }
    }
}

/// What a merchant notification reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    PaymentResult,
    RefundResult,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PaymentResult => "PAYMENT_RESULT",
            Self::RefundResult => "REFUND_RESULT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PAYMENT_RESULT" => Some(Self::PaymentResult),
            "REFUND_RESULT" => Some(Self::RefundResult),
            _ => None,
        }
    }
}

impl std::fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A queued merchant notification.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub outbox_id: i64,
    pub kind: NotificationKind,
    pub payment_id: String,
    pub refund_id: Option<String>,
    pub client_id: String,
    pub url: String,
    pub body: String,
    pub status: NotificationStatus,
    pub n_attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub delivered_ms: Option<i64>,
}

const OUTBOX_COLUMNS: &str = "outbox_id, kind, payment_id, refund_id, client_id, url, body, \
    status, n_attempts, next_attempt_ms, last_error, created_ms, delivered_ms";

fn outbox_from_row(r: &Row<'_>) -> sql::Result<OutboxRow> {
    let outbox_id: i64 = r.get(0)?;
    let row = || format!("outbox {outbox_id}");
    let kind: String = r.get(1)?;
    let status: String = r.get(7)?;
    Ok(OutboxRow {
        outbox_id,
        kind: NotificationKind::parse(&kind)
            .ok_or_else(|| corrupt_column(1, format!("{}: kind {kind:?}", row())))?,
        payment_id: r.get(2)?,
        refund_id: r.get(3)?,
        client_id: r.get(4)?,
        url: r.get(5)?,
        body: r.get(6)?,
        status: NotificationStatus::parse(&status)
            .ok_or_else(|| corrupt_column(7, format!("{}: status {status:?}", row())))?,
        n_attempts: r.get(8)?,
        next_attempt_ms: ms_at(r, 9, &row)?,
        last_error: r.get(10)?,
        created_ms: ms_at(r, 11, &row)?,
        delivered_ms: opt_ms_at(r, 12, &row)?,
    })
}

pub struct NewNotification<'a> {
    pub kind: NotificationKind,
    pub payment_id: &'a str,
    pub refund_id: Option<&'a str>,
    pub client_id: &'a str,
    pub url: &'a str,
    pub body: &'a str,
}

pub fn enqueue_notification(
    c: &Connection,
    n: &NewNotification<'_>,
    now_ms: i64,
) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO outbox (kind, payment_id, refund_id, client_id, url, body, status, \
         n_attempts, next_attempt_ms, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'PENDING', 0, ?7, ?7)",
    )?
    .execute(params![n.kind.as_str(), n.payment_id, n.refund_id, n.client_id, n.url, n.body, now_ms])?;
    Ok(())
}

pub fn any_notification_due(c: &Connection, now_ms: i64) -> StoreResult<bool> {
    Ok(c.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM outbox WHERE status = 'PENDING' AND next_attempt_ms <= ?1)",
    )?
    .query_row([now_ms], |r| r.get(0))?)
}

/// Claims up to `limit` due notifications by pushing their next attempt to `lease_until_ms`,
/// so that a concurrent worker (or a crash mid-send) cannot lose or double-claim them.
pub fn claim_due_notifications(
    c: &Connection,
    now_ms: i64,
    lease_until_ms: i64,
    limit: usize,
) -> StoreResult<Vec<OutboxRow>> {
    // Another process's claim in flight is skipped, not waited for (PostgreSQL).
    let rows = c.query_all_cached(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'PENDING' AND next_attempt_ms <= ?1 \
         ORDER BY next_attempt_ms LIMIT ?2{}", c.skip_locked()
    ), params![now_ms, limit as i64], outbox_from_row)?;
    for r in &rows {
        c.prepare_cached("UPDATE outbox SET next_attempt_ms = ?2 WHERE outbox_id = ?1")?
            .execute(params![r.outbox_id, lease_until_ms])?;
    }
    Ok(rows)
}

/// Records one delivery attempt's outcome.
pub fn record_notification_attempt(
    c: &Connection,
    outbox_id: i64,
    status: NotificationStatus,
    next_attempt_ms: i64,
    error: Option<&str>,
    now_ms: i64,
) -> StoreResult<()> {
    let delivered = (status == NotificationStatus::Delivered).then_some(now_ms);
    c.prepare_cached(
        "UPDATE outbox SET status = ?2, n_attempts = n_attempts + 1, next_attempt_ms = ?3, \
         last_error = ?4, delivered_ms = ?5 WHERE outbox_id = ?1",
    )?
    .execute(params![
        outbox_id,
        status.as_str(),
        next_attempt_ms,
        error,
        delivered
    ])?;
    Ok(())
}

pub fn notifications(
    c: &Connection,
    status: Option<NotificationStatus>,
    limit: usize,
) -> StoreResult<Vec<OutboxRow>> {
    let status = status.map(NotificationStatus::as_str);
    let rows = c.query_all_cached(
        &format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE (CAST(?1 AS TEXT) IS NULL OR status = ?1) \
         ORDER BY outbox_id DESC LIMIT ?2"
        ),
        params![status, limit as i64],
        outbox_from_row,
    )?;
    Ok(rows)
}

pub fn notifications_of_payment(c: &Connection, payment_id: &str) -> StoreResult<Vec<OutboxRow>> {
    let rows = c.query_all_cached(
        &format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE payment_id = ?1 ORDER BY outbox_id"),
        [payment_id],
        outbox_from_row,
    )?;
    Ok(rows)
}

pub fn outbox_by_id(c: &Connection, outbox_id: i64) -> StoreResult<Option<OutboxRow>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE outbox_id = ?1"
    ))?
    .query_row([outbox_id], outbox_from_row)
    .optional()?)
}

/// Puts a notification (delivered or parked) back in the queue for an immediate attempt.
pub fn resend_notification(c: &Connection, outbox_id: i64, now_ms: i64) -> StoreResult<bool> {
    let n = c
        .prepare_cached(
            "UPDATE outbox SET status = 'PENDING', next_attempt_ms = ?2 WHERE outbox_id = ?1",
        )?
        .execute(params![outbox_id, now_ms])?;
    Ok(n == 1)
}

pub fn count_outbox_pending(c: &Connection) -> StoreResult<i64> {
    Ok(c.query_row(
        "SELECT COUNT(*) FROM outbox WHERE status = 'PENDING'",
        [],
        |r| r.get(0),
    )?)
}

pub fn add_event(
    c: &Connection,
    payment_id: &str,
    kind: &str,
    detail: &str,
    now_ms: i64,
) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO payment_events (payment_id, at_ms, kind, detail) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![payment_id, now_ms, kind, detail])?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct EventRow {
    pub at_ms: i64,
    pub kind: String,
    pub detail: String,
}

pub fn events_of_payment(c: &Connection, payment_id: &str) -> StoreResult<Vec<EventRow>> {
    let rows = c.query_all_cached(
        "SELECT at_ms, kind, detail FROM payment_events WHERE payment_id = ?1 ORDER BY event_id",
        [payment_id],
        |r| {
            Ok(EventRow {
                at_ms: ms_at(r, 0, &|| format!("an event of payment {payment_id}"))?,
                kind: r.get(1)?,
                detail: r.get(2)?,
            })
        },
    )?;
    Ok(rows)
}
