//! The `notifyPayment` outbox as the background pass sees it: what is due, and one attempt's
//! record (delivered, or scheduled again per the retry schedule).

use crate::store::{self, outbox::DueNotification};
use crate::{Inner, WalletError};
use std::sync::Arc;

/// Claims the due notifications for one pass. The lease outlasts an attempt (its timeout) with
/// room to record the answer; a process that dies mid-attempt has its claims taken over after it.
pub(crate) async fn claim_due_notifications(
    inner: &Arc<Inner>,
    limit: usize,
) -> Result<Vec<DueNotification>, WalletError> {
    let now_ms = inner.now_ms();
    let any_due = inner
        .read_store(move |c| store::outbox::any_due(c, now_ms))
        .await?;
    if !any_due {
        return Ok(Vec::new());
    }
    let timeout_ms = i64::try_from(inner.config.notify_timeout_ms).unwrap_or(i64::MAX);
    let lease_until_ms = now_ms.saturating_add(timeout_ms.saturating_mul(3).max(10_000));
    inner
        .write_store(move |c| store::outbox::claim_due(c, now_ms, lease_until_ms, limit))
        .await
}

/// Records one delivery attempt: delivered, or scheduled again per the retry schedule.
pub(crate) async fn record_attempt(
    inner: &Arc<Inner>,
    notify_id: i64,
    n_attempts_before: u32,
    error: Option<String>,
) -> Result<(), WalletError> {
    let i = inner.clone();
    inner
        .write_store(move |conn| {
            let now_ms = i.now_ms();
            let n = n_attempts_before.saturating_add(1);
            match &error {
                None => store::outbox::mark_delivered(conn, notify_id, n, now_ms),
                Some(e) => {
                    let schedule = &i.config.notify_retry_ms;
                    let idx = usize::try_from(n)
                        .unwrap_or(usize::MAX)
                        .min(schedule.len() - 1);
                    let delay = i64::try_from(schedule[idx]).unwrap_or(i64::MAX);
                    let next_ms = now_ms.saturating_add(delay);
                    store::outbox::schedule_retry(conn, notify_id, n, next_ms, e)
                }
            }
        })
        .await
}

pub(crate) async fn pending_notifications(inner: &Arc<Inner>) -> Result<usize, WalletError> {
    inner.read_store(store::outbox::n_undelivered).await
}
