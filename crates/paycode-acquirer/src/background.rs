//! Background work, all driven from the store so a restart resumes it:
//! - the **notifier** delivers outbox rows to merchants on the retry schedule, then parks them;
//! - the **reconciler** asks wallets about payments whose outcome is unknown or pending, closes
//!   expired ones (after the wallet agrees), and re-drives unfinished refunds.
//!
//! Work is claimed in the database (a lease on `next_attempt_ms` / `next_check_ms`) before any
//! network call, so several processes on one database never work the same item at once and a
//! crash mid-call only delays an item by the lease. A test drains the queues with
//! [`Acquirer::run_background_once`] instead of sleeping.

use crate::service::{Acquirer, ApiError, WalletFacts, wallet_failure_code};
use crate::store::{self, NotificationStatus, OutboxRow};
use paycode_core::ResultCode;
use paycode_core::payment::{PaymentEvent, PaymentState};
use paycode_proto::ResultInfo;
use std::time::Duration;

impl Acquirer {
    /// One pass of every background job; returns how many items it worked on.
    pub async fn run_background_once(&self) -> Result<usize, ApiError> {
        let n_notified = self.notify_pass().await?;
        let n_reconciled = self.reconcile_pass().await?;
        let n_refunds = self.refund_pass().await?;
        self.prune_pass().await?;
        self.settle_pass().await;
        Ok(n_notified + n_reconciled + n_refunds)
    }

    /// Runs the background jobs until the returned handle is aborted.
    pub fn spawn_background(&self) -> tokio::task::JoinHandle<()> {
        let acq = self.clone();
        tokio::spawn(async move {
            let idle = Duration::from_millis(acq.config().limits.background_idle_ms);
            let reload_every = Duration::from_secs(acq.config().limits.registry_reload_s.max(1));
            let mut last_reload = tokio::time::Instant::now();
            loop {
                match acq.run_background_once().await {
                    Ok(0) => tokio::time::sleep(idle).await,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(code = %e.code, error = %e.message, "background pass failed");
                        tokio::time::sleep(idle).await;
                    }
                }
                if last_reload.elapsed() >= reload_every {
                    last_reload = tokio::time::Instant::now();
                    if let Err(e) = acq.registry().reload(acq.db()).await {
                        tracing::error!(error = %e, "reloading reference data failed");
                    }
                    if let Err(e) = acq.reload_risk_rules().await {
                        tracing::error!(error = %e.message, "reloading risk rules failed");
                    }
                    if let Err(e) = acq.reload_rates().await {
                        tracing::error!(error = %e.message, "reloading exchange rates failed");
                    }
                    if let Ok(depth) = acq.db().read(store::count_outbox_pending).await {
                        metrics::gauge!("paycode_outbox_pending").set(depth as f64);
                    }
                }
            }
        })
    }

    /// Delivers the notifications that are due; how many it tried.
    pub(crate) async fn notify_pass(&self) -> Result<usize, ApiError> {
        let now = self.now_ms();
        let limits = &self.config().limits;
        let lease = now + limits.work_lease_ms;
        let batch = limits.background_batch_max;
        // Look before claiming: an idle pass must not cost a write and an fsync.
        let any_due = self
            .db()
            .read(move |c| store::any_notification_due(c, now).map_err(ApiError::from))
            .await?;
        if !any_due {
            return Ok(0);
        }
        let claimed = self
            .db()
            .write(move |c| {
                store::claim_due_notifications(c, now, lease, batch).map_err(ApiError::from)
            })
            .await?;
        let n = claimed.len();
        let sends = claimed.into_iter().map(|row| self.deliver(row));
        for r in futures_util::future::join_all(sends).await {
            r?;
        }
        Ok(n)
    }

    async fn deliver(&self, row: OutboxRow) -> Result<(), ApiError> {
        let started = std::time::Instant::now();
        let answer = self
            .inner
            .notifier
            .post_raw_as(&row.client_id, &row.url, row.body.clone().into_bytes())
            .await;
        let took = format!(
            "{} in {} ms",
            match &answer {
                Ok(a) => format!("HTTP {}", a.status),
                Err(_) => "no answer".to_string(),
            },
            started.elapsed().as_millis()
        );
        let error = match answer {
            Ok(a) if a.status == 200 => {
                match serde_json::from_slice::<serde_json::Value>(&a.body) {
                    Ok(v) if acknowledged(&v) => None,
                    Ok(_) => Some("answer is not a SUCCESS result".to_string()),
                    Err(e) => Some(format!("answer is not JSON: {e}")),
                }
            }
            Ok(a) => Some(format!("HTTP status {}", a.status)),
            Err(e) => Some(e.to_string()),
        };
        let now = self.now_ms();
        let schedule = &self.config().limits.notify_schedule_s;
        let attempt_idx = row.n_attempts as usize; // this attempt
        let (status, next) = match &error {
            None => (NotificationStatus::Delivered, now),
            Some(_) => match schedule.get(attempt_idx + 1) {
                Some(delay_s) => (NotificationStatus::Pending, now + delay_s * 1000),
                None => (NotificationStatus::Parked, now),
            },
        };
        match &error {
            None => {
                tracing::info!(payment_id = %row.payment_id, kind = %row.kind, "notification delivered")
            }
            Some(e) => {
                metrics::counter!("paycode_notification_failures_total").increment(1);
                tracing::warn!(payment_id = %row.payment_id, kind = %row.kind, attempt = attempt_idx + 1, status = status.as_str(), error = %e, "notification not delivered");
            }
        }
        let detail = match &error {
            None => format!(
                "{} delivered to {} (attempt {}, {took})",
                row.kind,
                row.url,
                attempt_idx + 1
            ),
            Some(e) => format!(
                "{} to {} failed (attempt {}, {took}): {e}; now {}",
                row.kind,
                row.url,
                attempt_idx + 1,
                status.as_str()
            ),
        };
        self.db()
            .write(move |c| {
                store::record_notification_attempt(
                    c,
                    row.outbox_id,
                    status,
                    next,
                    error.as_deref(),
                    now,
                )?;
                store::add_event(c, &row.payment_id, "NOTIFY", &detail, now)?;
                Ok::<_, ApiError>(())
            })
            .await
    }

    async fn reconcile_pass(&self) -> Result<usize, ApiError> {
        let now = self.now_ms();
        let limits = self.config().limits.clone();
        let due = self
            .db()
            .read(move |c| {
                store::payments_due(c, now, limits.background_batch_max).map_err(ApiError::from)
            })
            .await?;
        let mut n = 0;
        for p in due {
            let (id, seen) = (p.payment_id.clone(), p.next_check_ms.unwrap_or(0));
            let lease = now + limits.work_lease_ms;
            let won = self
                .db()
                .write(move |c| {
                    store::claim_payment_check(c, &id, seen, lease).map_err(ApiError::from)
                })
                .await?;
            if !won {
                continue;
            }
            n += 1;
            let Some(wallet) = self.snapshot().wallets.get(&p.wallet).cloned() else {
                tracing::error!(payment_id = %p.payment_id, wallet = %p.wallet, "payment's wallet is not registered");
                continue;
            };
            let retry_at = now + limits.reconcile_interval_ms;
            if now >= p.expires_ms {
                // Close only once the wallet agrees it will not complete the payment.
                match self.inner.wallets.cancel(&wallet, &p.payment_id).await {
                    Ok(r) if r.result.is_success() => {
                        self.apply(
                            &p.payment_id,
                            PaymentEvent::ExpiryCancelConfirmed,
                            WalletFacts {
                                message: Some("the payment expired before it completed".into()),
                                ..WalletFacts::default()
                            },
                            "expiry",
                        )
                        .await?;
                    }
                    other => {
                        let why = match other {
                            Ok(r) => {
                                format!("{} {}", r.result.result_code, r.result.result_message)
                            }
                            Err(e) => e.to_string(),
                        };
                        self.recheck_at(
                            &p.payment_id,
                            retry_at,
                            &format!("expired, wallet did not confirm the close: {why}"),
                            false,
                        )
                        .await?;
                    }
                }
                continue;
            }
            match self.inner.wallets.inquiry(&wallet, &p.payment_id).await {
                Ok(r) if r.result.is_success() => {
                    let facts = WalletFacts {
                        wallet_payment_id: r.payment_id.clone(),
                        customer_id: r.customer_id.clone(),
                        message: r.payment_result.as_ref().map(|x| x.result_message.clone()),
                    };
                    match r.payment_result.as_ref().map(|x| x.result_status.as_str()) {
                        Some("S") => {
                            self.apply(
                                &p.payment_id,
                                PaymentEvent::WalletSucceeded,
                                facts,
                                "reconciler inquiry",
                            )
                            .await?;
                        }
                        Some("F") => {
                            let code = wallet_failure_code(
                                &r.payment_result
                                    .as_ref()
                                    .map(|x| x.result_code.clone())
                                    .unwrap_or_default(),
                            );
                            self.apply(
                                &p.payment_id,
                                PaymentEvent::WalletFailed(code),
                                facts,
                                "reconciler inquiry",
                            )
                            .await?;
                        }
                        _ => {
                            self.recheck_at(
                                &p.payment_id,
                                retry_at,
                                "wallet: still in process",
                                true,
                            )
                            .await?
                        }
                    }
                }
                Ok(r) if r.result.result_code == "ORDER_NOT_EXIST" => {
                    // The wallet never saw the pay request: make sure it never will, then close.
                    match self.inner.wallets.cancel(&wallet, &p.payment_id).await {
                        Ok(c) if c.result.is_success() => {
                            self.apply(&p.payment_id, PaymentEvent::ExpiryCancelConfirmed, WalletFacts {
                                message: Some("the wallet never received the payment; nothing was charged".into()),
                                ..WalletFacts::default()
                            }, "reconciler: unknown at wallet")
                            .await?;
                        }
                        _ => {
                            self.recheck_at(
                                &p.payment_id,
                                retry_at,
                                "unknown at wallet; close not confirmed yet",
                                false,
                            )
                            .await?
                        }
                    }
                }
                Ok(r) => {
                    let why = format!(
                        "inquiry answered {} {}",
                        r.result.result_code, r.result.result_message
                    );
                    self.recheck_at(&p.payment_id, retry_at, &why, false)
                        .await?;
                }
                Err(e) => {
                    self.recheck_at(
                        &p.payment_id,
                        retry_at,
                        &format!("inquiry failed: {e}"),
                        false,
                    )
                    .await?
                }
            }
        }
        Ok(n)
    }

    /// Leaves a processing payment for a later check; `in_process` records that the wallet
    /// confirmed it is waiting for the user (so merchants see `PAYMENT_IN_PROCESS`).
    async fn recheck_at(
        &self,
        payment_id: &str,
        at_ms: i64,
        detail: &str,
        in_process: bool,
    ) -> Result<(), ApiError> {
        let (id, detail, now) = (payment_id.to_string(), detail.to_string(), self.now_ms());
        self.db()
            .write(move |c| {
                if let Some(mut p) = store::payment_by_id(c, &id)?
                    && p.state == PaymentState::Processing
                {
                    p.next_check_ms = Some(at_ms);
                    if in_process {
                        p.result_code = ResultCode::PAYMENT_IN_PROCESS;
                        p.result_message = String::new();
                    }
                    store::update_payment(c, &p)?;
                    store::add_event(c, &id, "RECONCILE", &detail, now)?;
                }
                Ok::<_, ApiError>(())
            })
            .await
    }

    /// Forgets seen codes from before yesterday (no code is valid for more than minutes, so the
    /// replay rule never needs them, and the set stays as small as two days of traffic) and
    /// guessing counters whose window has closed.
    async fn prune_pass(&self) -> Result<(), ApiError> {
        let now = self.now_ms();
        let limits = &self.config().limits;
        let batch = limits.background_batch_max * 16;
        let longest_ms = [
            limits.guess_per_client,
            limits.guess_per_merchant,
            limits.guess_per_terminal,
        ]
        .iter()
        .map(|l| l.window_ms())
        .max()
        .unwrap_or(0);
        let counters_before_ms = now - longest_ms;
        let (codes_due, counters_due, buyers_due) = self
            .db()
            .read(move |c| {
                Ok::<_, ApiError>((
                    store::risk::any_stale_seen_codes(c, now)?,
                    store::guesses::any_older_than(c, counters_before_ms)?,
                    store::risk::any_stale_buyer_data(c, now)?,
                ))
            })
            .await?;
        if codes_due || counters_due || buyers_due {
            self.db()
                .write(move |c| {
                    store::risk::prune_seen_codes(c, now, batch)?;
                    store::guesses::prune(c, counters_before_ms, batch)?;
                    store::risk::prune_buyer_data(c, now, batch)?;
                    Ok::<_, ApiError>(())
                })
                .await?;
        }
        Ok(())
    }

    async fn refund_pass(&self) -> Result<usize, ApiError> {
        let now = self.now_ms();
        let limits = self.config().limits.clone();
        let any_due = self
            .db()
            .read(move |c| Ok::<_, ApiError>(!store::refunds_due(c, now, 1)?.is_empty()))
            .await?;
        if !any_due {
            return Ok(0);
        }
        // Each refund is claimed by a compare-and-set on the check time it was seen with, so
        // that two processes never drive one refund at once and a refund finished meanwhile
        // by another process is not put back from this copy.
        let lease = now + limits.reconcile_interval_ms.max(1_000);
        let due = self
            .db()
            .write(move |c| {
                let mut claimed = Vec::new();
                for mut r in store::refunds_due(c, now, limits.background_batch_max)? {
                    let seen = r.next_check_ms.unwrap_or(0);
                    if store::claim_refund_check(c, &r.refund_id, seen, lease)? {
                        r.next_check_ms = Some(lease);
                        claimed.push(r);
                    }
                }
                Ok::<_, ApiError>(claimed)
            })
            .await?;
        let n = due.len();
        for r in due {
            let pid = r.payment_id.clone();
            let Some(p) = self
                .db()
                .read(move |c| store::payment_by_id(c, &pid).map_err(ApiError::from))
                .await?
            else {
                continue;
            };
            self.drive_refund(&p, r).await?;
        }
        Ok(n)
    }
}

fn acknowledged(v: &serde_json::Value) -> bool {
    serde_json::from_value::<ResultInfo>(v.get("result").cloned().unwrap_or_default())
        .map(|r| r.result_status == "S" && r.result_code == "SUCCESS")
        .unwrap_or(false)
}
