//! The MPP use cases: pay, inquire, cancel and refund, and the one writer of payment
//! transitions ([`apply`]). Each public function is **one** job on the group-commit writer that
//! does its reads inside the job: whatever decides a write (a code's last used step, a payment's
//! stage, a balance, a refunded total) is read in the same serialised job that writes. That is
//! what makes "confirm vs cancel", "code used twice" and "refund twice" end with exactly one
//! outcome. Money moves only through [`move_money`] (balance and ledger row together);
//! `notifyPayment` is queued through [`enqueue_notify`] in the same job as the state change it
//! reports (outbox).

use crate::code_check::{self, CodeSource};
use crate::payment_state::{Effect, Event, Outcome, PayState, Stage, transition};
use crate::policy::{self, Decision};
use crate::store::users::LedgerEntry;
use crate::store::{self, LedgerKind};
use crate::{Inner, WalletError, iso_ms};
use paycode_core::ResultCode;
use paycode_db::sql::Connection;
use paycode_proto::{Amount, ResultInfo};
use std::sync::Arc;

pub(crate) use crate::store::payments::PaymentRow;

impl PaymentRow {
    /// The payment's state as the MPP API reports it.
    pub(crate) fn result(&self) -> ResultInfo {
        match self.state {
            PayState::Processing => {
                let c = ResultCode::PAYMENT_IN_PROCESS;
                ResultInfo::new(c.as_str(), "U", "waiting for the user's password")
            }
            PayState::Success => ResultInfo::success(),
            PayState::Fail => {
                ResultInfo::new(self.result_code.as_str(), "F", self.result_message.clone())
            }
            PayState::Tombstone => {
                let c = ResultCode::ORDER_IS_CLOSED;
                ResultInfo::new(
                    c.as_str(),
                    "F",
                    "the payment was cancelled before it was paid",
                )
            }
        }
    }

    pub(crate) fn pay_to_amount(&self) -> Amount {
        Amount::new(&self.currency, self.amount_minor)
    }

    /// A payment the wallet has not stored yet, before the `pay` (or a cancel that overtook it)
    /// fills it in: no amount, no user, nothing decided.
    pub(crate) fn unseen(
        prid: &str,
        payment_id: String,
        currency: &paycode_core::Currency,
        now_ms: i64,
    ) -> PaymentRow {
        PaymentRow {
            payment_request_id: prid.to_string(),
            payment_id,
            key_hash: None,
            state: PayState::Processing,
            result_code: ResultCode::PAYMENT_IN_PROCESS,
            result_message: String::new(),
            user_name: None,
            customer_id: None,
            device_id: None,
            amount_minor: 0,
            currency: currency.code().to_string(),
            payment_amount_minor: 0,
            payment_currency: currency.code().to_string(),
            quote_price: None,
            merchant_name: String::new(),
            store_name: None,
            notify_url: None,
            challenge_reason: None,
            created_at_ms: now_ms,
            deadline_ms: None,
            paid_at_ms: None,
            finished_at_ms: None,
            cancelled_at_ms: None,
            reversed_at_ms: None,
            refunded_minor: 0,
        }
    }

    /// Where the payment is in its life (see [`crate::payment_state`]).
    pub(crate) fn stage(&self) -> Stage {
        Stage::of(
            self.state,
            self.cancelled_at_ms.is_some(),
            self.reversed_at_ms.is_some(),
            self.refunded_minor > 0,
        )
    }
}

/// One event for a payment, with what its effects need besides the row.
pub(crate) struct Change<'a> {
    pub event: Event,
    /// The result message kept when the event fails the payment.
    pub message: &'a str,
    /// The refund behind a [`Event::Refunded`], for its ledger row.
    pub refund_request_id: Option<&'a str>,
}

impl<'a> Change<'a> {
    pub(crate) fn new(event: Event, message: &'a str) -> Change<'a> {
        Change {
            event,
            message,
            refund_request_id: None,
        }
    }
}

/// Applies a change to a stored payment.
pub(crate) fn apply(
    inner: &Inner,
    conn: &Connection,
    p: &mut PaymentRow,
    change: Change<'_>,
    now_ms: i64,
) -> Result<Outcome, WalletError> {
    let from = p.stage();
    apply_at(inner, conn, p, from, change, now_ms)
}

/// The one writer of payment transitions (`from` is [`Stage::Absent`] for a payment not stored
/// yet): asks the table, then writes the row and every effect
/// in the caller's job. The row changes only when the table says so.
fn apply_at(
    inner: &Inner,
    conn: &Connection,
    p: &mut PaymentRow,
    from: Stage,
    change: Change<'_>,
    now_ms: i64,
) -> Result<Outcome, WalletError> {
    let outcome = transition(from, change.event);
    let Outcome::Applied { next, effects } = &outcome else {
        return Ok(outcome);
    };
    let prid = p.payment_request_id.clone();
    p.state = next
        .stored()
        .ok_or_else(|| WalletError::Corrupt(format!("payment {prid} would become {next}")))?;
    let mut refund_minor = 0;
    for effect in effects.iter() {
        match effect {
            Effect::RecordSuccess => {
                p.result_code = ResultCode::SUCCESS;
                p.result_message = "success".to_string();
                p.paid_at_ms = Some(now_ms);
                p.finished_at_ms = Some(now_ms);
            }
            Effect::RecordPending => {
                p.result_code = ResultCode::PAYMENT_IN_PROCESS;
                p.result_message = "waiting for the user's password".to_string();
            }
            Effect::RecordFailure => {
                let code = change.event.failure_code().ok_or_else(|| {
                    WalletError::Corrupt(format!(
                        "{} fails payment {prid} without a code",
                        change.event
                    ))
                })?;
                p.result_code = code;
                p.result_message = change.message.to_string();
                p.finished_at_ms = Some(now_ms);
            }
            Effect::RecordCancel => p.cancelled_at_ms = Some(now_ms),
            Effect::CreditReversal => p.reversed_at_ms = Some(now_ms),
            Effect::CreditRefund => {
                let Event::Refunded { amount_minor } = change.event else {
                    return Err(WalletError::Corrupt(format!(
                        "{} refunds payment {prid}",
                        change.event
                    )));
                };
                refund_minor = amount_minor;
                p.refunded_minor = p
                    .refunded_minor
                    .checked_add(amount_minor)
                    .ok_or(WalletError::Overflow)?;
            }
            Effect::Debit | Effect::NotifyAcquirer => {}
        }
    }
    if from == Stage::Absent {
        store::payments::insert(conn, p)?;
    } else {
        store::payments::update(conn, p)?;
    }
    for effect in effects.iter() {
        let (delta_minor, kind, refund_rid) = match effect {
            Effect::Debit => (-p.amount_minor, LedgerKind::Payment, None),
            Effect::CreditReversal => (p.amount_minor, LedgerKind::Reversal, None),
            Effect::CreditRefund => (refund_minor, LedgerKind::Refund, change.refund_request_id),
            Effect::NotifyAcquirer => {
                enqueue_notify(inner, conn, p, now_ms)?;
                continue;
            }
            // Written with the row above.
            Effect::RecordSuccess
            | Effect::RecordPending
            | Effect::RecordFailure
            | Effect::RecordCancel => continue,
        };
        let user = p
            .user_name
            .clone()
            .ok_or_else(|| WalletError::Corrupt(format!("paid payment {prid} has no user")))?;
        move_money(
            conn,
            &LedgerEntry {
                user_name: &user,
                kind,
                amount_minor: delta_minor,
                payment_request_id: Some(&prid),
                refund_request_id: refund_rid,
                merchant_name: Some(&p.merchant_name),
                at_ms: now_ms,
            },
        )?;
    }
    Ok(outcome)
}

/// Changes a user's balance and appends the ledger row: the only way money moves.
pub(crate) fn move_money(conn: &Connection, entry: &LedgerEntry<'_>) -> Result<i64, WalletError> {
    let user = entry.user_name;
    let balance = store::users::balance(conn, user)?
        .ok_or_else(|| WalletError::UnknownUser(user.to_string()))?;
    let new_balance = balance
        .checked_add(entry.amount_minor)
        .ok_or(WalletError::Overflow)?;
    if new_balance < 0 {
        // The decision checks the balance first; reaching here is a bug, so roll back.
        return Err(WalletError::Corrupt(format!(
            "a {} would make user {user}'s balance negative",
            entry.kind.as_str()
        )));
    }
    store::users::set_balance(conn, user, new_balance)?;
    store::users::append_ledger(conn, entry)?;
    Ok(new_balance)
}

/// Queues `notifyPayment` for a payment that just reached a final state, if the acquirer gave a
/// notify URL. The body is fixed now, so every retry sends the same content.
fn enqueue_notify(
    inner: &Inner,
    conn: &Connection,
    p: &PaymentRow,
    now_ms: i64,
) -> Result<(), WalletError> {
    let Some(url) = &p.notify_url else {
        return Ok(());
    };
    debug_assert!(matches!(p.state, PayState::Success | PayState::Fail));
    let body = paycode_proto::mpp::NotifyPayment {
        payment_request_id: p.payment_request_id.clone(),
        payment_result: p.result(),
        payment_id: Some(p.payment_id.clone()),
        payment_time: p.paid_at_ms.map(iso_ms),
        pay_to_amount: p.pay_to_amount(),
        customer_id: p.customer_id.clone(),
    };
    let body = serde_json::to_string(&body)
        .map_err(|e| WalletError::Corrupt(format!("cannot encode a notification: {e}")))?;
    let delay = i64::try_from(inner.config.notify_retry_ms[0]).unwrap_or(i64::MAX);
    store::outbox::enqueue(
        conn,
        &p.payment_request_id,
        url,
        &body,
        now_ms.saturating_add(delay),
    )?;
    Ok(())
}

/// A validated `pay` request.
#[derive(Debug, Clone)]
pub(crate) struct PayInput {
    pub prid: String,
    pub key_hash: String,
    /// The scanned code; never logged.
    pub code: String,
    pub amount_minor: i64,
    pub currency: String,
    pub payment_amount_minor: i64,
    pub payment_currency: String,
    pub quote_price: Option<String>,
    pub merchant_name: String,
    pub store_name: Option<String>,
    pub expiry_ms: i64,
    pub notify_url: Option<String>,
    /// The acquirer's risk check asks for the password even under the password-free limits.
    pub verification_required: bool,
    /// Who sent it, for the guessing limits.
    pub source: CodeSource,
}

pub(crate) enum PayOutcome {
    Row(Box<PaymentRow>),
    Inconsistent,
}

fn pay_tx(inner: &Inner, conn: &Connection, input: PayInput) -> Result<PayOutcome, WalletError> {
    if let Some(p) = store::payments::load(conn, &input.prid)? {
        if p.state != PayState::Tombstone && p.key_hash.as_deref() != Some(input.key_hash.as_str())
        {
            return Ok(PayOutcome::Inconsistent);
        }
        return Ok(PayOutcome::Row(Box::new(p)));
    }
    let now_ms = inner.now_ms();
    let mut p = PaymentRow {
        key_hash: Some(input.key_hash.clone()),
        amount_minor: input.amount_minor,
        currency: input.currency.clone(),
        payment_amount_minor: input.payment_amount_minor,
        payment_currency: input.payment_currency.clone(),
        quote_price: input.quote_price.clone(),
        merchant_name: input.merchant_name.clone(),
        store_name: input.store_name.clone(),
        notify_url: input.notify_url.clone(),
        ..PaymentRow::unseen(
            &input.prid,
            inner.new_id("WP"),
            &inner.config.currency,
            now_ms,
        )
    };
    let change = if input.currency != inner.config.currency.code() {
        let msg = format!("this wallet pays in {} only", inner.config.currency);
        (Event::Refused(ResultCode::CURRENCY_NOT_SUPPORT), msg)
    } else if now_ms >= input.expiry_ms {
        let msg = "the payment expired before it reached the wallet".to_string();
        (Event::Refused(ResultCode::ORDER_IS_CLOSED), msg)
    } else {
        decide_pay(inner, conn, &mut p, &input, now_ms)?
    };
    let (event, message) = change;
    let change = Change::new(event, &message);
    apply_at(inner, conn, &mut p, Stage::Absent, change, now_ms)?;
    Ok(PayOutcome::Row(Box::new(p)))
}

/// Checks the code and the user's limits; fills in who pays and, for a challenge, its deadline.
fn decide_pay(
    inner: &Inner,
    conn: &Connection,
    p: &mut PaymentRow,
    input: &PayInput,
    now_ms: i64,
) -> Result<(Event, String), WalletError> {
    let hit = match code_check::check_code(inner, conn, &input.code, &input.source, now_ms)? {
        Err((code, message)) => return Ok((Event::Refused(code), message)),
        Ok(hit) => hit,
    };
    p.device_id = Some(hit.device_id);
    p.user_name = Some(hit.user_name.clone());
    let Some(user) = store::users::load(conn, &hit.user_name)? else {
        let c = ResultCode::USER_NOT_EXIST;
        return Ok((Event::Refused(c), c.default_message().to_string()));
    };
    p.customer_id = Some(user.customer_id.clone());
    let today = store::payments::paid_today(conn, &hit.user_name, now_ms)?;
    let mut decision = policy::decide(&user.limits, input.amount_minor, today);
    if hit.suspect && decision == Decision::PayNow {
        decision = Decision::Challenge {
            reason: "wrong payment codes were tried for this phone; confirm with your password"
                .to_string(),
        };
    }
    if input.verification_required && decision == Decision::PayNow {
        decision = Decision::Challenge {
            reason: "the payment network's risk check asks you to confirm with your password"
                .to_string(),
        };
    }
    Ok(match decision {
        Decision::Reject(c) => (Event::Refused(c), c.default_message().to_string()),
        Decision::PayNow => (Event::Approved, String::new()),
        Decision::Challenge { reason } => {
            let timeout_ms = i64::try_from(inner.config.challenge_timeout_s)
                .unwrap_or(i64::MAX / 2000)
                .saturating_mul(1000);
            p.deadline_ms = Some(now_ms.saturating_add(timeout_ms).min(input.expiry_ms));
            p.challenge_reason = Some(reason);
            (Event::Challenged, String::new())
        }
    })
}

pub(crate) async fn pay(inner: &Arc<Inner>, input: PayInput) -> Result<PayOutcome, WalletError> {
    let i = inner.clone();
    inner
        .db
        .write(move |conn| pay_tx(&i, conn, input.clone()))
        .await
}

/// The payment, closing it first if its challenge deadline has passed (so that an inquiry never
/// reports "in process" for a payment that can no longer complete).
pub(crate) async fn inquire(
    inner: &Arc<Inner>,
    prid: &str,
) -> Result<Option<PaymentRow>, WalletError> {
    let id = prid.to_string();
    let p = inner
        .read_store(move |c| store::payments::load(c, &id))
        .await?;
    let now_ms = inner.now_ms();
    match p {
        Some(p)
            if p.state == PayState::Processing && p.deadline_ms.is_some_and(|d| d <= now_ms) =>
        {
            crate::challenges::expire_due(inner, vec![p.payment_request_id.clone()]).await?;
            let id = prid.to_string();
            inner
                .read_store(move |c| store::payments::load(c, &id))
                .await
        }
        other => Ok(other),
    }
}

pub(crate) struct CancelOutcome {
    pub result: ResultInfo,
    pub cancel_time_ms: Option<i64>,
}

fn cancel_tx(inner: &Inner, conn: &Connection, prid: &str) -> Result<CancelOutcome, WalletError> {
    let now_ms = inner.now_ms();
    let ok = |t: i64| CancelOutcome {
        result: ResultInfo::success(),
        cancel_time_ms: Some(t),
    };
    let (mut p, stored) = match store::payments::load(conn, prid)? {
        Some(p) => (p, true),
        None => {
            let id = inner.new_id("WP");
            (
                PaymentRow::unseen(prid, id, &inner.config.currency, now_ms),
                false,
            )
        }
    };
    let message = if stored {
        "cancelled by the acquirer"
    } else {
        "cancelled before the wallet saw the payment"
    };
    let change = Change::new(Event::Cancelled, message);
    let outcome = if stored {
        apply(inner, conn, &mut p, change, now_ms)?
    } else {
        apply_at(inner, conn, &mut p, Stage::Absent, change, now_ms)?
    };
    Ok(match outcome {
        Outcome::Applied { .. } => ok(now_ms),
        Outcome::Unchanged => ok(p.cancelled_at_ms.unwrap_or(now_ms)),
        // Only a partly refunded payment refuses a cancel.
        Outcome::Refused(c) => CancelOutcome {
            result: ResultInfo::new(
                c.as_str(),
                "F",
                "the payment is partly refunded; refund the rest instead",
            ),
            cancel_time_ms: None,
        },
    })
}

pub(crate) async fn cancel(inner: &Arc<Inner>, prid: String) -> Result<CancelOutcome, WalletError> {
    let i = inner.clone();
    inner.db.write(move |conn| cancel_tx(&i, conn, &prid)).await
}

#[derive(Debug, Clone)]
pub(crate) struct RefundInput {
    pub refund_request_id: String,
    pub prid: String,
    pub amount_minor: i64,
    pub currency: String,
}

pub(crate) struct RefundOutcome {
    pub result: ResultInfo,
    pub refund_id: Option<String>,
    pub refund_time_ms: Option<i64>,
    pub amount: Option<Amount>,
}

fn refund_fail(code: ResultCode, msg: &str) -> RefundOutcome {
    RefundOutcome {
        result: ResultInfo::new(code.as_str(), "F", msg),
        refund_id: None,
        refund_time_ms: None,
        amount: None,
    }
}

fn refund_tx(
    inner: &Inner,
    conn: &Connection,
    r: RefundInput,
) -> Result<RefundOutcome, WalletError> {
    // The payment first: reading it locks it (PostgreSQL), so a copy of this request in another
    // process waits here and then finds its refund, instead of counting it against the amount
    // left and answering REFUND_AMOUNT_EXCEED.
    let payment = store::payments::load(conn, &r.prid)?;
    if let Some(done) = store::payments::load_refund(conn, &r.refund_request_id)? {
        if done.payment_request_id != r.prid
            || done.amount_minor != r.amount_minor
            || done.currency != r.currency
        {
            let c = ResultCode::REPEAT_REQ_INCONSISTENT;
            return Ok(refund_fail(c, c.default_message()));
        }
        return Ok(RefundOutcome {
            result: ResultInfo::success(),
            refund_id: Some(done.refund_id),
            refund_time_ms: Some(done.created_at_ms),
            amount: Some(Amount::new(&done.currency, done.amount_minor)),
        });
    }
    if r.currency != inner.config.currency.code() {
        let msg = format!(
            "refunds are in the wallet currency {}",
            inner.config.currency
        );
        return Ok(refund_fail(ResultCode::CURRENCY_NOT_SUPPORT, &msg));
    }
    let Some(mut p) = payment else {
        let c = ResultCode::ORDER_NOT_EXIST;
        return Ok(refund_fail(c, c.default_message()));
    };
    let event = Event::Refunded {
        amount_minor: r.amount_minor,
    };
    match transition(p.stage(), event) {
        Outcome::Applied { .. } => {}
        Outcome::Refused(_) | Outcome::Unchanged => {
            return Ok(refund_fail(
                ResultCode::ORDER_STATUS_INVALID,
                "only a paid, not reversed payment can be refunded",
            ));
        }
    }
    let total = p
        .refunded_minor
        .checked_add(r.amount_minor)
        .ok_or(WalletError::Overflow)?;
    if total > p.amount_minor {
        let c = ResultCode::REFUND_AMOUNT_EXCEED;
        return Ok(refund_fail(c, c.default_message()));
    }
    let now_ms = inner.now_ms();
    let change = Change {
        event,
        message: "",
        refund_request_id: Some(&r.refund_request_id),
    };
    apply(inner, conn, &mut p, change, now_ms)?;
    let refund_id = inner.new_id("WR");
    let row = store::payments::RefundRow {
        refund_id: refund_id.clone(),
        payment_request_id: r.prid.clone(),
        amount_minor: r.amount_minor,
        currency: r.currency.clone(),
        created_at_ms: now_ms,
    };
    store::payments::insert_refund(conn, &r.refund_request_id, &row)?;
    Ok(RefundOutcome {
        result: ResultInfo::success(),
        refund_id: Some(refund_id),
        refund_time_ms: Some(now_ms),
        amount: Some(Amount::new(&r.currency, r.amount_minor)),
    })
}

pub(crate) async fn refund(
    inner: &Arc<Inner>,
    r: RefundInput,
) -> Result<RefundOutcome, WalletError> {
    let i = inner.clone();
    inner
        .db
        .write(move |conn| refund_tx(&i, conn, r.clone()))
        .await
}
