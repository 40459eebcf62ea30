//! The wallet's background work, as one bounded pass that a loop or a test can drive: close
//! challenges past their deadline (queuing `notifyPayment F`), forget used codes and guessing
//! counters that can no longer matter, then attempt every due notification (`notifyPayment`,
//! and `reportCustomer` when a user is frozen or unfrozen). A notification is delivered when
//! the acquirer answers HTTP 200 with a signed `result` of status `S`; anything else is
//! retried on the configured schedule.

use crate::Inner;
use crate::store::outbox::DueNotification;
use crate::{challenges, code_check, notify};
use anyhow::Context;
use paycode_proto::merchant::NotifyAck;
use std::sync::Arc;

pub(crate) async fn run_once(inner: &Arc<Inner>) -> anyhow::Result<usize> {
    let batch = inner.config.background_batch_max;
    let due = challenges::due_challenges(inner, batch)
        .await
        .context("listing challenges past their deadline")?;
    let mut work = 0;
    if !due.is_empty() {
        work += challenges::expire_due(inner, due)
            .await
            .context("closing challenges past their deadline")?;
    }
    work += code_check::prune_code_state(inner, batch)
        .await
        .context("forgetting used codes and closed guessing windows")?;
    let notes = notify::claim_due_notifications(inner, batch)
        .await
        .context("claiming due notifications")?;
    let mut tasks = tokio::task::JoinSet::new();
    for n in notes {
        let inner = inner.clone();
        tasks.spawn(async move {
            let error = deliver(&inner, &n).await.err();
            if let Some(e) = &error {
                tracing::warn!(wallet = %inner.config.name, payment_request_id = %n.payment_request_id,
                    attempt = n.n_attempts + 1, error = %e, "notification not acknowledged");
            } else {
                tracing::info!(wallet = %inner.config.name, payment_request_id = %n.payment_request_id,
                    attempt = n.n_attempts + 1, "notification delivered");
            }
            notify::record_attempt(&inner, n.notify_id, n.n_attempts, error)
                .await
                .context("recording a notification attempt")
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a notification task panicked")??;
        work += 1;
    }
    Ok(work)
}

async fn deliver(inner: &Inner, n: &DueNotification) -> Result<(), String> {
    let answer = inner
        .notify_client
        .post_raw(&n.url, n.body.clone().into_bytes())
        .await
        .map_err(|e| e.to_string())?;
    if answer.status != 200 {
        return Err(format!("HTTP status {}", answer.status));
    }
    let ack: NotifyAck =
        serde_json::from_slice(&answer.body).map_err(|e| format!("answer is not a result: {e}"))?;
    if ack.result.result_status != "S" {
        return Err(format!("acquirer answered {}", ack.result.result_code));
    }
    Ok(())
}
