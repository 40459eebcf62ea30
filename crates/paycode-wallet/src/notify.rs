//! The `notifyPayment` outbox as the background pass sees it: what is due, and one attempt's
//! record (delivered, or scheduled again per the retry schedule).

use crate::store::{self, outbox::DueNotification};
use crate::{Inner, WalletError};
use std::sync::Arc;

pub(crate) async fn due_notifications(
    inner: &Arc<Inner>,
    limit: usize,
) -> Result<Vec<DueNotification>, WalletError> {
    let now_ms = inner.now_ms();
    inner
        .read_store(move |c| store::outbox::due(c, now_ms, limit))
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
