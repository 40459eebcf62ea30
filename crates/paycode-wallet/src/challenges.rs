//! Password challenges: the phone's confirm and decline, and their deadline. Each runs as one
//! write job that re-reads the payment, so a confirm racing the acquirer's cancel (or the
//! deadline) ends with exactly one of them applied.

use crate::payment_state::{Event, PayState, Stage};
use crate::payments::{Change, PaymentRow, apply};
use crate::policy;
use crate::store;
use crate::users::{self, PasswordAttempt};
use crate::{Inner, WalletError};
use paycode_core::ResultCode;
use paycode_db::sql::Connection;
use paycode_proto::ResultInfo;
use std::sync::Arc;

/// Closes the listed challenges that are still pending and past their deadline.
fn expire_tx(inner: &Inner, conn: &Connection, prids: &[String]) -> Result<usize, WalletError> {
    let now_ms = inner.now_ms();
    let mut n = 0;
    for prid in prids {
        let Some(mut p) = store::payments::load(conn, prid)? else {
            continue;
        };
        if p.stage() == Stage::Pending && p.deadline_ms.is_some_and(|d| d <= now_ms) {
            apply(
                inner,
                conn,
                &mut p,
                Change::new(Event::TimedOut, "the user did not confirm in time"),
                now_ms,
            )?;
            n += 1;
        }
    }
    Ok(n)
}

pub(crate) async fn expire_due(
    inner: &Arc<Inner>,
    prids: Vec<String>,
) -> Result<usize, WalletError> {
    let i = inner.clone();
    inner
        .db
        .write(move |conn| expire_tx(&i, conn, &prids))
        .await
}

pub(crate) async fn due_challenges(
    inner: &Arc<Inner>,
    limit: usize,
) -> Result<Vec<String>, WalletError> {
    let now_ms = inner.now_ms();
    inner
        .read_store(move |c| store::payments::due_challenge_ids(c, now_ms, limit))
        .await
}

/// What the customer API answers to a confirm or a decline.
pub(crate) struct ChallengeAnswer {
    pub result: ResultInfo,
    pub payment_status: Option<&'static str>,
    pub remaining_attempts: Option<u32>,
}

/// The `paymentStatus` the phone sees.
fn status_of(p: &PaymentRow) -> &'static str {
    match p.state {
        PayState::Processing => "PROCESSING",
        PayState::Success => "SUCCESS",
        PayState::Fail | PayState::Tombstone => "FAIL",
    }
}

fn answer_final(p: &PaymentRow) -> ChallengeAnswer {
    let result = match p.state {
        PayState::Success => ResultInfo::success(),
        _ => ResultInfo::new(p.result_code.as_str(), "F", p.result_message.clone()),
    };
    ChallengeAnswer {
        result,
        payment_status: Some(status_of(p)),
        remaining_attempts: None,
    }
}

/// Loads a challenge of `user` and closes it first if its deadline has passed. `Err` is the
/// answer to give when it is no longer pending.
fn pending_challenge(
    inner: &Inner,
    conn: &Connection,
    user: &str,
    challenge_id: &str,
    now_ms: i64,
) -> Result<Result<PaymentRow, ChallengeAnswer>, WalletError> {
    let Some(mut p) = store::payments::load_of_user(conn, challenge_id, user)? else {
        let c = ResultCode::ORDER_NOT_EXIST;
        return Ok(Err(ChallengeAnswer {
            result: ResultInfo::new(c.as_str(), "F", "no such challenge for this user"),
            payment_status: None,
            remaining_attempts: None,
        }));
    };
    if p.stage() != Stage::Pending {
        return Ok(Err(answer_final(&p)));
    }
    if p.deadline_ms.is_some_and(|d| d <= now_ms) {
        apply(
            inner,
            conn,
            &mut p,
            Change::new(Event::TimedOut, "the user did not confirm in time"),
            now_ms,
        )?;
        return Ok(Err(answer_final(&p)));
    }
    Ok(Ok(p))
}

fn confirm_tx(
    inner: &Inner,
    conn: &Connection,
    user: &str,
    challenge_id: &str,
    password_ok: bool,
) -> Result<ChallengeAnswer, WalletError> {
    let now_ms = inner.now_ms();
    let mut p = match pending_challenge(inner, conn, user, challenge_id, now_ms)? {
        Ok(p) => p,
        Err(answer) => return Ok(answer),
    };
    let u = store::users::load(conn, user)?
        .ok_or_else(|| WalletError::UnknownUser(user.to_string()))?;
    let verification_failed = ResultCode::USER_PAYMENT_VERIFICATION_FAILED;
    let change = match users::count_password_attempt(inner, conn, user, &u, password_ok)? {
        PasswordAttempt::Right => {
            let today = store::payments::paid_today(conn, user, now_ms)?;
            match policy::decide_at_confirm(&u.limits, p.amount_minor, today) {
                Err(code) => Change::new(Event::Refused(code), code.default_message()),
                Ok(()) => Change::new(Event::Confirmed, ""),
            }
        }
        PasswordAttempt::Locked => Change::new(
            Event::Refused(verification_failed),
            "the payment password is locked",
        ),
        PasswordAttempt::LockedNow => {
            tracing::warn!(wallet = %inner.config.name, payment_request_id = %p.payment_request_id,
                "payment password locked after {} wrong attempts", inner.config.password_max_attempts);
            let change = Change::new(
                Event::Refused(verification_failed),
                "wrong password too many times; the password is locked",
            );
            apply(inner, conn, &mut p, change, now_ms)?;
            let mut a = answer_final(&p);
            a.remaining_attempts = Some(0);
            return Ok(a);
        }
        PasswordAttempt::Wrong { remaining } => {
            return Ok(ChallengeAnswer {
                result: ResultInfo::new(
                    verification_failed.as_str(),
                    "F",
                    format!("wrong password; {remaining} attempts left"),
                ),
                payment_status: Some("PROCESSING"),
                remaining_attempts: Some(remaining),
            });
        }
    };
    apply(inner, conn, &mut p, change, now_ms)?;
    Ok(answer_final(&p))
}

pub(crate) async fn confirm(
    inner: &Arc<Inner>,
    user: String,
    challenge_id: String,
    password_ok: bool,
) -> Result<ChallengeAnswer, WalletError> {
    let i = inner.clone();
    inner
        .db
        .write(move |conn| confirm_tx(&i, conn, &user, &challenge_id, password_ok))
        .await
}

fn decline_tx(
    inner: &Inner,
    conn: &Connection,
    user: &str,
    challenge_id: &str,
) -> Result<ChallengeAnswer, WalletError> {
    let now_ms = inner.now_ms();
    let mut p = match pending_challenge(inner, conn, user, challenge_id, now_ms)? {
        Ok(p) => p,
        Err(answer) => return Ok(answer),
    };
    apply(
        inner,
        conn,
        &mut p,
        Change::new(Event::Declined, "the user declined the payment"),
        now_ms,
    )?;
    Ok(ChallengeAnswer {
        result: ResultInfo::success(),
        payment_status: Some("FAIL"),
        remaining_attempts: None,
    })
}

pub(crate) async fn decline(
    inner: &Arc<Inner>,
    user: String,
    challenge_id: String,
) -> Result<ChallengeAnswer, WalletError> {
    let i = inner.clone();
    inner
        .db
        .write(move |conn| decline_tx(&i, conn, &user, &challenge_id))
        .await
}

pub(crate) async fn pending_challenges(
    inner: &Arc<Inner>,
    user: String,
) -> Result<Vec<PaymentRow>, WalletError> {
    let now_ms = inner.now_ms();
    inner
        .read_store(move |c| store::payments::pending_of_user(c, &user, now_ms))
        .await
}
