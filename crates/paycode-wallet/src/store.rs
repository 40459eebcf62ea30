//! The wallet's store: the schema and every transaction.
//!
//! Each public function here that changes state runs as **one** job on the group-commit writer,
//! and does its reads inside that job: whatever decides a write (a code's last used step, a
//! payment's state, a balance, a refunded total) is read in the same serialised job that
//! writes. That is what makes "confirm vs cancel", "code used twice" and "refund twice" end with
//! exactly one outcome. Money moves only through [`move_money`], which updates the balance and
//! appends the user's ledger row together; `notifyPayment` is queued through [`enqueue_notify`]
//! in the same job as the state change it reports (outbox).

use crate::code::{self, OtpMatch, SECRET_LEN};
use crate::payment_state::{Effect, Event, Outcome, PayState, Stage, transition};
use crate::policy::{self, Decision, UserLimits};
use crate::{Inner, NewUser, WalletError, iso_ms};
use aws_lc_rs::digest;
use aws_lc_rs::rand::SecureRandom;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use paycode_core::ResultCode;
use paycode_core::guess::{Source, SourceLimit};
use paycode_db::rusqlite::{Connection, OptionalExtension, params};
use paycode_db::{ExecCached, guess_counters};
use paycode_proto::{Amount, ResultInfo};
use std::sync::Arc;

pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    balance_minor INTEGER NOT NULL CHECK (balance_minor >= 0),
    frozen INTEGER NOT NULL DEFAULT 0,
    password_failures INTEGER NOT NULL DEFAULT 0,
    password_locked INTEGER NOT NULL DEFAULT 0,
    pwfree_per_payment_minor INTEGER NOT NULL,
    pwfree_daily_minor INTEGER NOT NULL,
    hard_per_payment_minor INTEGER NOT NULL,
    hard_daily_minor INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users(name),
    device_name TEXT,
    token_hash TEXT NOT NULL UNIQUE,
    slot TEXT NOT NULL UNIQUE,
    secret BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL,
    rotated_at_ms INTEGER NOT NULL
);
-- Codes that paid (or were tried in a payment), so each pays once. Kept only while a code could
-- still be inside its window; the slot (never reused) keeps rotated devices apart.
CREATE TABLE IF NOT EXISTS used_codes (
    slot TEXT NOT NULL,
    step INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    used_at_ms INTEGER NOT NULL,
    PRIMARY KEY (slot, step, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS used_codes_by_time ON used_codes(used_at_ms);
CREATE TABLE IF NOT EXISTS retired_slots (
    slot TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    retired_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS payments (
    payment_request_id TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL UNIQUE,
    key_hash TEXT,
    state TEXT NOT NULL,
    result_code TEXT NOT NULL,
    result_message TEXT NOT NULL,
    user_name TEXT,
    customer_id TEXT,
    device_id TEXT,
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    payment_amount_minor INTEGER NOT NULL,
    payment_currency TEXT NOT NULL,
    quote_price TEXT,
    merchant_name TEXT NOT NULL,
    store_name TEXT,
    notify_url TEXT,
    challenge_reason TEXT,
    created_at_ms INTEGER NOT NULL,
    deadline_ms INTEGER,
    paid_at_ms INTEGER,
    finished_at_ms INTEGER,
    cancelled_at_ms INTEGER,
    reversed_at_ms INTEGER,
    refunded_minor INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS payments_by_user_paid ON payments(user_name, paid_at_ms);
CREATE INDEX IF NOT EXISTS payments_processing ON payments(deadline_ms) WHERE state = 'PROCESSING';
-- What each user paid per UTC day (successful, not reversed), kept in step with `payments` by
-- the only two functions that write payment rows, so the daily limit check reads one row
-- instead of summing the day's payments.
CREATE TABLE IF NOT EXISTS user_daily (
    user_name TEXT NOT NULL,
    day INTEGER NOT NULL,
    paid_minor INTEGER NOT NULL,
    PRIMARY KEY (user_name, day)
);
CREATE TABLE IF NOT EXISTS refunds (
    refund_request_id TEXT PRIMARY KEY,
    refund_id TEXT NOT NULL UNIQUE,
    payment_request_id TEXT NOT NULL REFERENCES payments(payment_request_id),
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_name TEXT NOT NULL REFERENCES users(name),
    kind TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    payment_request_id TEXT,
    refund_request_id TEXT,
    merchant_name TEXT,
    at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_by_user ON ledger(user_name, entry_id);
CREATE INDEX IF NOT EXISTS ledger_by_payment ON ledger(payment_request_id);
CREATE TABLE IF NOT EXISTS notify_outbox (
    notify_id INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_request_id TEXT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    n_attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    delivered_at_ms INTEGER,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS notify_due ON notify_outbox(next_attempt_at_ms) WHERE delivered_at_ms IS NULL;
"#;

/// Ledger row kinds. The sum of a user's rows is their balance.
pub(crate) mod kind {
    pub const OPENING: &str = "OPENING";
    pub const TOPUP: &str = "TOPUP";
    pub const PAYMENT: &str = "PAYMENT";
    pub const REVERSAL: &str = "REVERSAL";
    pub const REFUND: &str = "REFUND";
}

pub(crate) fn random_bytes(buf: &mut [u8]) {
    aws_lc_rs::rand::SystemRandom::new()
        .fill(buf)
        .expect("the system random generator does not fail");
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    digest::digest(&digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn random_token(n_bytes: usize) -> String {
    let mut b = vec![0u8; n_bytes];
    random_bytes(&mut b);
    B64URL.encode(b)
}

/// The `state` column's text of a stored state.
fn state_str(state: PayState) -> &'static str {
    match state {
        PayState::Processing => "PROCESSING",
        PayState::Success => "SUCCESS",
        PayState::Fail => "FAIL",
        PayState::Tombstone => "CANCELLED",
    }
}

/// Parses the `state` column; a value the wallet never writes is corrupt, never a default.
fn parse_state(s: &str) -> Result<PayState, WalletError> {
    match s {
        "PROCESSING" => Ok(PayState::Processing),
        "SUCCESS" => Ok(PayState::Success),
        "FAIL" => Ok(PayState::Fail),
        "CANCELLED" => Ok(PayState::Tombstone),
        other => Err(WalletError::Corrupt(format!("payment state {other:?}"))),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct PaymentRow {
    pub payment_request_id: String,
    pub payment_id: String,
    pub key_hash: Option<String>,
    pub state: PayState,
    pub result_code: String,
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

fn payment_from_row(
    r: &paycode_db::rusqlite::Row<'_>,
) -> paycode_db::rusqlite::Result<(PaymentRow, String)> {
    let state_text: String = r.get(3)?;
    Ok((
        PaymentRow {
            payment_request_id: r.get(0)?,
            payment_id: r.get(1)?,
            key_hash: r.get(2)?,
            state: PayState::Processing,
            result_code: r.get(4)?,
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
        },
        state_text,
    ))
}

fn load_payment_where(
    conn: &Connection,
    clause: &str,
    args: impl paycode_db::rusqlite::Params,
) -> Result<Option<PaymentRow>, WalletError> {
    let sql = format!("SELECT {PAY_COLS} FROM payments WHERE {clause}");
    let found = conn
        .query_row_cached(&sql, args, payment_from_row)
        .optional()?;
    match found {
        None => Ok(None),
        Some((mut p, state)) => {
            p.state = parse_state(&state)?;
            Ok(Some(p))
        }
    }
}

pub(crate) fn load_payment(
    conn: &Connection,
    prid: &str,
) -> Result<Option<PaymentRow>, WalletError> {
    load_payment_where(conn, "payment_request_id = ?1", params![prid])
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
        (PayState::Success, None, Some(paid), Some(user)) => Some((
            user.to_string(),
            paid.div_euclid(86_400_000),
            p.amount_minor,
        )),
        _ => None,
    }
}

fn add_daily(
    conn: &Connection,
    share: Option<(String, i64, i64)>,
    sign: i64,
) -> Result<(), WalletError> {
    if let Some((user, day, amount)) = share {
        conn.prepare_cached(
            "INSERT INTO user_daily (user_name, day, paid_minor) VALUES (?1, ?2, ?3) \
             ON CONFLICT (user_name, day) DO UPDATE SET paid_minor = paid_minor + excluded.paid_minor",
        )?
        .execute(params![user, day, sign * amount])?;
    }
    Ok(())
}

fn insert_payment(conn: &Connection, p: &PaymentRow) -> Result<(), WalletError> {
    add_daily(conn, daily_share(p), 1)?;
    conn.exec_cached(
        &format!(
            "INSERT INTO payments ({PAY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
             ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)"
        ),
        params![
            p.payment_request_id,
            p.payment_id,
            p.key_hash,
            state_str(p.state),
            p.result_code,
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

fn update_payment(conn: &Connection, p: &PaymentRow) -> Result<(), WalletError> {
    let before = load_payment(conn, &p.payment_request_id)?.and_then(|b| daily_share(&b));
    let after = daily_share(p);
    if before != after {
        add_daily(conn, before, -1)?;
        add_daily(conn, after, 1)?;
    }
    let n = conn.exec_cached(
        "UPDATE payments SET state = ?2, result_code = ?3, result_message = ?4, paid_at_ms = ?5, \
         finished_at_ms = ?6, cancelled_at_ms = ?7, reversed_at_ms = ?8, refunded_minor = ?9 \
         WHERE payment_request_id = ?1",
        params![
            p.payment_request_id,
            state_str(p.state),
            p.result_code,
            p.result_message,
            p.paid_at_ms,
            p.finished_at_ms,
            p.cancelled_at_ms,
            p.reversed_at_ms,
            p.refunded_minor,
        ],
    )?;
    if n != 1 {
        return Err(WalletError::Corrupt(format!(
            "payment {} vanished during an update",
            p.payment_request_id
        )));
    }
    Ok(())
}

impl PaymentRow {
    /// The payment's state as the MPP API reports it.
    pub(crate) fn result(&self) -> ResultInfo {
        match self.state {
            PayState::Processing => {
                let c = ResultCode::PAYMENT_IN_PROCESS;
                ResultInfo::new(c.as_str(), "U", "waiting for the user's password")
            }
            PayState::Success => ResultInfo::success(),
            PayState::Fail => ResultInfo::new(&self.result_code, "F", self.result_message.clone()),
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
}

impl PaymentRow {
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
            result_code: String::new(),
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
fn apply(
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
    for effect in effects.iter() {
        match effect {
            Effect::RecordSuccess => {
                p.result_code = ResultCode::SUCCESS.as_str().to_string();
                p.result_message = "success".to_string();
                p.paid_at_ms = Some(now_ms);
                p.finished_at_ms = Some(now_ms);
            }
            Effect::RecordPending => {
                p.result_code = ResultCode::PAYMENT_IN_PROCESS.as_str().to_string();
                p.result_message = "waiting for the user's password".to_string();
            }
            Effect::RecordFailure => {
                let code = change.event.failure_code().ok_or_else(|| {
                    WalletError::Corrupt(format!(
                        "{} fails payment {prid} without a code",
                        change.event
                    ))
                })?;
                p.result_code = code.as_str().to_string();
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
                p.refunded_minor = p
                    .refunded_minor
                    .checked_add(amount_minor)
                    .ok_or(WalletError::Overflow)?;
            }
            Effect::Debit | Effect::NotifyAcquirer => {}
        }
    }
    if from == Stage::Absent {
        insert_payment(conn, p)?;
    } else {
        update_payment(conn, p)?;
    }
    for effect in effects.iter() {
        let (delta_minor, kind, refund_rid) = match (effect, change.event) {
            (Effect::Debit, _) => (-p.amount_minor, kind::PAYMENT, None),
            (Effect::CreditReversal, _) => (p.amount_minor, kind::REVERSAL, None),
            (Effect::CreditRefund, Event::Refunded { amount_minor }) => {
                (amount_minor, kind::REFUND, change.refund_request_id)
            }
            (Effect::NotifyAcquirer, _) => {
                enqueue_notify(inner, conn, p, now_ms)?;
                continue;
            }
            _ => continue,
        };
        let user = p
            .user_name
            .clone()
            .ok_or_else(|| WalletError::Corrupt(format!("paid payment {prid} has no user")))?;
        move_money(
            conn,
            &user,
            delta_minor,
            kind,
            Some(&prid),
            refund_rid,
            Some(&p.merchant_name),
            now_ms,
        )?;
    }
    Ok(outcome)
}

/// Changes a user's balance and appends the ledger row: the only way money moves.
#[allow(clippy::too_many_arguments)]
fn move_money(
    conn: &Connection,
    user: &str,
    delta_minor: i64,
    kind: &str,
    prid: Option<&str>,
    refund_rid: Option<&str>,
    merchant: Option<&str>,
    now_ms: i64,
) -> Result<i64, WalletError> {
    let balance: Option<i64> = conn
        .query_row(
            "SELECT balance_minor FROM users WHERE name = ?1",
            params![user],
            |r| r.get(0),
        )
        .optional()?;
    let balance = balance.ok_or_else(|| WalletError::UnknownUser(user.to_string()))?;
    let new_balance = balance
        .checked_add(delta_minor)
        .ok_or(WalletError::Overflow)?;
    if new_balance < 0 {
        // The decision checks the balance first; reaching here is a bug, so roll back.
        return Err(WalletError::Corrupt(format!(
            "a {kind} would make user {user}'s balance negative"
        )));
    }
    conn.exec_cached(
        "UPDATE users SET balance_minor = ?2 WHERE name = ?1",
        params![user, new_balance],
    )?;
    conn.exec_cached(
        "INSERT INTO ledger (user_name, kind, amount_minor, payment_request_id, refund_request_id, \
         merchant_name, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![user, kind, delta_minor, prid, refund_rid, merchant, now_ms],
    )?;
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
    conn.exec_cached(
        "INSERT INTO notify_outbox (payment_request_id, url, body, next_attempt_at_ms) \
         VALUES (?1, ?2, ?3, ?4)",
        params![
            p.payment_request_id,
            url,
            body,
            now_ms.saturating_add(delay)
        ],
    )?;
    Ok(())
}

struct UserRow {
    customer_id: String,
    limits: UserLimits,
    password_failures: u32,
}

fn load_user(conn: &Connection, name: &str) -> Result<Option<UserRow>, WalletError> {
    Ok(conn
        .query_row(
            "SELECT customer_id, frozen, password_locked, balance_minor, pwfree_per_payment_minor, \
             pwfree_daily_minor, hard_per_payment_minor, hard_daily_minor, password_failures \
             FROM users WHERE name = ?1",
            params![name],
            |r| {
                Ok(UserRow {
                    customer_id: r.get(0)?,
                    limits: UserLimits {
                        frozen: r.get(1)?,
                        password_locked: r.get(2)?,
                        balance_minor: r.get(3)?,
                        password_free_per_payment_minor: r.get(4)?,
                        password_free_daily_minor: r.get(5)?,
                        hard_limit_per_payment_minor: r.get(6)?,
                        hard_limit_daily_minor: r.get(7)?,
                    },
                    password_failures: r.get(8)?,
                })
            },
        )
        .optional()?)
}

/// What the user paid today (UTC day), net of reversals.
fn paid_today(conn: &Connection, user: &str, now_ms: i64) -> Result<i64, WalletError> {
    Ok(conn
        .prepare_cached("SELECT paid_minor FROM user_daily WHERE user_name = ?1 AND day = ?2")?
        .query_row(params![user, now_ms.div_euclid(86_400_000)], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

// ---------------------------------------------------------------------------------------------
// pay

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
    /// Who sent it, for the guessing limits.
    pub source: CodeSource,
}

pub(crate) enum PayOutcome {
    Row(Box<PaymentRow>),
    Inconsistent,
}

struct DeviceHit {
    device_id: String,
    user_name: String,
    /// Wrong codes were tried for this slot recently: the payment needs the password.
    suspect: bool,
}

/// Who sent a code look-up, as the acquirer's request names it: the acquirer (its verified
/// `Client-Id`), the merchant and, when given, the terminal.
#[derive(Debug, Clone)]
pub(crate) struct CodeSource {
    pub acquirer: String,
    pub merchant: String,
    pub terminal: Option<String>,
}

impl CodeSource {
    fn limited(&self, limits: &code::GuessLimits) -> Vec<(Source<'_>, SourceLimit)> {
        let mut v = vec![(
            Source::Merchant {
                client: &self.acquirer,
                merchant: &self.merchant,
            },
            limits.per_merchant,
        )];
        if let Some(terminal) = self.terminal.as_deref() {
            v.push((
                Source::Terminal {
                    client: &self.acquirer,
                    merchant: &self.merchant,
                    terminal,
                },
                limits.per_terminal,
            ));
        }
        v
    }
}

fn slot_key(slot: &str) -> String {
    format!("s\u{1f}{slot}")
}

/// Checks a code and, when it is accepted, marks it used (in the caller's job). A source over its
/// guessing limit is refused before the code is looked at; a failed look-up counts against the
/// source (and, for a known slot, against the slot, which makes its next payments need the
/// password). Nothing here ever refuses a genuine code because of failures counted elsewhere.
fn check_code(
    inner: &Inner,
    conn: &Connection,
    code_digits: &str,
    source: &CodeSource,
    now_ms: i64,
) -> Result<Result<DeviceHit, (ResultCode, String)>, WalletError> {
    let cfg = &inner.config;
    let limits = &cfg.guess_limits;
    let sources = source.limited(limits);
    for (src, limit) in &sources {
        if let Some(wait_ms) = limit.refusal(guess_counters::load(conn, &src.key())?, now_ms) {
            tracing::warn!(wallet = %cfg.name, code = %paycode_core::code::mask(code_digits),
                source = %src, "code look-up refused: the source is over its guessing limit");
            return Ok(Err((
                ResultCode::RISK_REJECT,
                format!(
                    "too many invalid payment codes from {src} (at most {} in {} s); try again in {} s",
                    limit.failures_max,
                    limit.window_s,
                    (wait_ms + 999) / 1000
                ),
            )));
        }
    }
    let fail = |conn: &Connection, slot: Option<&str>| -> Result<(), WalletError> {
        for (src, limit) in &sources {
            guess_counters::count_failure(conn, &src.key(), *limit, now_ms)?;
        }
        if let Some(slot) = slot {
            guess_counters::count_failure(conn, &slot_key(slot), limits.slot.limit, now_ms)?;
        }
        Ok(())
    };
    let invalid = || {
        Ok(Err((
            ResultCode::INVALID_CODE,
            ResultCode::INVALID_CODE.default_message().to_string(),
        )))
    };
    let Some(parsed) = code::parse_code(code_digits, &cfg.cii) else {
        fail(conn, None)?;
        return invalid();
    };
    let device: Option<(String, String, Vec<u8>)> = conn
        .query_row_cached(
            "SELECT device_id, user_name, secret FROM devices WHERE slot = ?1",
            params![parsed.slot],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((device_id, user_name, secret)) = device else {
        fail(conn, None)?;
        return invalid();
    };
    let now_s = u64::try_from(now_ms / 1000).unwrap_or(0);
    let expired = || {
        Ok(Err((
            ResultCode::EXPIRED_CODE,
            ResultCode::EXPIRED_CODE.default_message().to_string(),
        )))
    };
    match code::match_otp(&secret, &cfg.cii, &parsed, inner.window(), now_s) {
        OtpMatch::Live { step } => {
            let step = i64::try_from(step).map_err(|_| WalletError::Overflow)?;
            let fresh = conn.exec_cached(
                "INSERT INTO used_codes (slot, step, seq, used_at_ms) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT DO NOTHING",
                params![parsed.slot, step, i64::from(parsed.seq), now_ms],
            )?;
            if fresh == 0 {
                return expired();
            }
            let suspect = limits
                .slot
                .limit
                .refusal(guess_counters::load(conn, &slot_key(&parsed.slot))?, now_ms)
                .is_some();
            Ok(Ok(DeviceHit {
                device_id,
                user_name,
                suspect,
            }))
        }
        OtpMatch::Old => expired(),
        OtpMatch::None => {
            fail(conn, Some(&parsed.slot))?;
            invalid()
        }
    }
}

fn pay_tx(inner: &Inner, conn: &Connection, input: PayInput) -> Result<PayOutcome, WalletError> {
    if let Some(p) = load_payment(conn, &input.prid)? {
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
    let hit = match check_code(inner, conn, &input.code, &input.source, now_ms)? {
        Err((code, message)) => return Ok((Event::Refused(code), message)),
        Ok(hit) => hit,
    };
    p.device_id = Some(hit.device_id);
    p.user_name = Some(hit.user_name.clone());
    let Some(user) = load_user(conn, &hit.user_name)? else {
        let c = ResultCode::USER_NOT_EXIST;
        return Ok((Event::Refused(c), c.default_message().to_string()));
    };
    p.customer_id = Some(user.customer_id.clone());
    let today = paid_today(conn, &hit.user_name, now_ms)?;
    let mut decision = policy::decide(&user.limits, input.amount_minor, today);
    if hit.suspect && decision == Decision::PayNow {
        decision = Decision::Challenge {
            reason: "wrong payment codes were tried for this phone; confirm with your password"
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
    inner.db.write(move |conn| pay_tx(&i, conn, input)).await
}

/// The payment, closing it first if its challenge deadline has passed (so that an inquiry never
/// reports "in process" for a payment that can no longer complete).
pub(crate) async fn inquire(
    inner: &Arc<Inner>,
    prid: &str,
) -> Result<Option<PaymentRow>, WalletError> {
    let id = prid.to_string();
    let p = inner.db.read(move |c| load_payment(c, &id)).await?;
    let now_ms = inner.now_ms();
    match p {
        Some(p)
            if p.state == PayState::Processing && p.deadline_ms.is_some_and(|d| d <= now_ms) =>
        {
            expire_due(inner, vec![p.payment_request_id.clone()]).await?;
            let id = prid.to_string();
            inner.db.read(move |c| load_payment(c, &id)).await
        }
        other => Ok(other),
    }
}

// ---------------------------------------------------------------------------------------------
// cancel and refund

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
    let (mut p, stored) = match load_payment(conn, prid)? {
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
    let existing: Option<(String, String, i64, String, i64)> = conn
        .query_row(
            "SELECT refund_id, payment_request_id, amount_minor, currency, created_at_ms FROM refunds \
             WHERE refund_request_id = ?1",
            params![r.refund_request_id],
            |x| Ok((x.get(0)?, x.get(1)?, x.get(2)?, x.get(3)?, x.get(4)?)),
        )
        .optional()?;
    if let Some((refund_id, prid, amount, currency, at)) = existing {
        if prid != r.prid || amount != r.amount_minor || currency != r.currency {
            let c = ResultCode::REPEAT_REQ_INCONSISTENT;
            return Ok(refund_fail(c, c.default_message()));
        }
        return Ok(RefundOutcome {
            result: ResultInfo::success(),
            refund_id: Some(refund_id),
            refund_time_ms: Some(at),
            amount: Some(Amount::new(&currency, amount)),
        });
    }
    if r.currency != inner.config.currency.code() {
        let msg = format!(
            "refunds are in the wallet currency {}",
            inner.config.currency
        );
        return Ok(refund_fail(ResultCode::CURRENCY_NOT_SUPPORT, &msg));
    }
    let Some(mut p) = load_payment(conn, &r.prid)? else {
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
    conn.exec_cached(
        "INSERT INTO refunds (refund_request_id, refund_id, payment_request_id, amount_minor, \
         currency, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            r.refund_request_id,
            refund_id,
            r.prid,
            r.amount_minor,
            r.currency,
            now_ms
        ],
    )?;
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
    inner.db.write(move |conn| refund_tx(&i, conn, r)).await
}

// ---------------------------------------------------------------------------------------------
// challenges

/// Closes the listed challenges that are still pending and past their deadline.
fn expire_tx(inner: &Inner, conn: &Connection, prids: &[String]) -> Result<usize, WalletError> {
    let now_ms = inner.now_ms();
    let mut n = 0;
    for prid in prids {
        let Some(mut p) = load_payment(conn, prid)? else {
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
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    inner
        .db
        .read(move |c| {
            let mut st = c.prepare(
                "SELECT payment_request_id FROM payments WHERE state = 'PROCESSING' \
                 AND deadline_ms <= ?1 ORDER BY deadline_ms LIMIT ?2",
            )?;
            let rows = st.query_map(params![now_ms, limit], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .await
}

/// Forgets used codes that are outside every window and guessing counters whose window has
/// closed, at most `limit` rows of each. Reads first, so an idle pass writes nothing.
pub(crate) async fn prune_code_state(
    inner: &Arc<Inner>,
    batch: usize,
) -> Result<usize, WalletError> {
    let now_ms = inner.now_ms();
    let window = inner.window();
    let used_before_ms = now_ms
        .saturating_sub(i64::try_from(window.remember_used_s()).unwrap_or(i64::MAX / 2000) * 1000);
    let g = &inner.config.guess_limits;
    let longest_ms = [g.per_merchant, g.per_terminal, g.slot.limit]
        .iter()
        .map(|l| l.window_ms())
        .max()
        .unwrap_or(0);
    let counters_before_ms = now_ms.saturating_sub(longest_ms);
    let any = inner
        .db
        .read(move |c| {
            let used: bool = c.query_row_cached(
                "SELECT EXISTS (SELECT 1 FROM used_codes WHERE used_at_ms < ?1)",
                params![used_before_ms],
                |r| r.get(0),
            )?;
            Ok::<bool, WalletError>(used || guess_counters::any_older_than(c, counters_before_ms)?)
        })
        .await?;
    if !any {
        return Ok(0);
    }
    let limit = i64::try_from(batch).unwrap_or(i64::MAX);
    inner
        .db
        .write(move |c| {
            let used = c.exec_cached(
                "DELETE FROM used_codes WHERE (slot, step, seq) IN (SELECT slot, step, seq \
                 FROM used_codes WHERE used_at_ms < ?1 ORDER BY used_at_ms LIMIT ?2)",
                params![used_before_ms, limit],
            )?;
            let counters = guess_counters::prune(c, counters_before_ms, batch)?;
            Ok::<usize, WalletError>(used + counters)
        })
        .await
}

/// What the customer API answers to a confirm or a decline.
pub(crate) struct ChallengeAnswer {
    pub result: ResultInfo,
    pub payment_status: Option<&'static str>,
    pub remaining_attempts: Option<u32>,
}

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
        _ => ResultInfo::new(&p.result_code, "F", p.result_message.clone()),
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
    let Some(mut p) = load_payment_where(
        conn,
        "payment_id = ?1 AND user_name = ?2",
        params![challenge_id, user],
    )?
    else {
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
    let u = load_user(conn, user)?.ok_or_else(|| WalletError::UnknownUser(user.to_string()))?;
    let verification_failed = ResultCode::USER_PAYMENT_VERIFICATION_FAILED;
    if u.limits.password_locked {
        apply(
            inner,
            conn,
            &mut p,
            Change::new(
                Event::Refused(verification_failed),
                "the payment password is locked",
            ),
            now_ms,
        )?;
        return Ok(answer_final(&p));
    }
    if !password_ok {
        let failures = u.password_failures.saturating_add(1);
        let max = inner.config.password_max_attempts;
        let locked = failures >= max;
        conn.exec_cached(
            "UPDATE users SET password_failures = ?2, password_locked = ?3 WHERE name = ?1",
            params![user, failures, locked],
        )?;
        if locked {
            tracing::warn!(wallet = %inner.config.name, payment_request_id = %p.payment_request_id,
                "payment password locked after {max} wrong attempts");
            apply(
                inner,
                conn,
                &mut p,
                Change::new(
                    Event::Refused(verification_failed),
                    "wrong password too many times; the password is locked",
                ),
                now_ms,
            )?;
            let mut a = answer_final(&p);
            a.remaining_attempts = Some(0);
            return Ok(a);
        }
        let left = max - failures;
        return Ok(ChallengeAnswer {
            result: ResultInfo::new(
                verification_failed.as_str(),
                "F",
                format!("wrong password; {left} attempts left"),
            ),
            payment_status: Some("PROCESSING"),
            remaining_attempts: Some(left),
        });
    }
    conn.exec_cached(
        "UPDATE users SET password_failures = 0 WHERE name = ?1",
        params![user],
    )?;
    let today = paid_today(conn, user, now_ms)?;
    let change = match policy::decide_at_confirm(&u.limits, p.amount_minor, today) {
        Err(code) => Change::new(Event::Refused(code), code.default_message()),
        Ok(()) => Change::new(Event::Confirmed, ""),
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
        .db
        .read(move |c| {
            let sql = format!(
                "SELECT {PAY_COLS} FROM payments WHERE user_name = ?1 AND state = 'PROCESSING' \
                 AND deadline_ms > ?2 ORDER BY created_at_ms LIMIT 100"
            );
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(params![user, now_ms], payment_from_row)?;
            let mut out = Vec::new();
            for row in rows {
                let (mut p, state) = row?;
                p.state = parse_state(&state)?;
                out.push(p);
            }
            Ok(out)
        })
        .await
}

// ---------------------------------------------------------------------------------------------
// users and devices

pub(crate) async fn create_user(inner: &Arc<Inner>, u: NewUser) -> Result<(), WalletError> {
    if u.name.is_empty() || u.name.len() > 64 {
        return Err(WalletError::InvalidUser(
            "name must be 1 to 64 characters".into(),
        ));
    }
    let amounts = [
        u.balance_minor,
        u.password_free_per_payment_minor,
        u.password_free_daily_minor,
        u.hard_limit_per_payment_minor,
        u.hard_limit_daily_minor,
    ];
    if amounts.iter().any(|&a| a < 0) {
        return Err(WalletError::InvalidUser(
            "amounts and limits must not be negative".into(),
        ));
    }
    let name = u.name.clone();
    let exists = inner
        .db
        .read(move |c| {
            Ok::<_, WalletError>(
                c.query_row("SELECT 1 FROM users WHERE name = ?1", params![name], |_| {
                    Ok(())
                })
                .optional()?
                .is_some(),
            )
        })
        .await?;
    if exists {
        return Ok(());
    }
    let hash =
        crate::password::hash_async(u.password.clone(), inner.config.password_memory_kib).await?;
    let i = inner.clone();
    inner
        .db
        .write(move |conn| {
            let now_ms = i.now_ms();
            let customer_id = format!("{}{}", i.config.cii, random_token(12));
            let inserted = conn.exec_cached(
                "INSERT OR IGNORE INTO users (name, customer_id, password_hash, balance_minor, frozen, \
                 pwfree_per_payment_minor, pwfree_daily_minor, hard_per_payment_minor, \
                 hard_daily_minor, created_at_ms) VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    u.name,
                    customer_id,
                    hash,
                    u.status_frozen,
                    u.password_free_per_payment_minor,
                    u.password_free_daily_minor,
                    u.hard_limit_per_payment_minor,
                    u.hard_limit_daily_minor,
                    now_ms
                ],
            )?;
            if inserted == 1 && u.balance_minor > 0 {
                move_money(conn, &u.name, u.balance_minor, kind::OPENING, None, None, None, now_ms)?;
            }
            Ok(())
        })
        .await
}

pub(crate) async fn balance_of(inner: &Arc<Inner>, user: &str) -> Result<i64, WalletError> {
    let name = user.to_string();
    inner
        .db
        .read(move |c| {
            c.query_row(
                "SELECT balance_minor FROM users WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(WalletError::UnknownUser(name))
        })
        .await
}

pub(crate) async fn top_up(
    inner: &Arc<Inner>,
    user: &str,
    amount_minor: i64,
) -> Result<i64, WalletError> {
    if amount_minor <= 0 {
        return Err(WalletError::InvalidUser("a top-up must be positive".into()));
    }
    let name = user.to_string();
    let i = inner.clone();
    inner
        .db
        .write(move |conn| {
            move_money(
                conn,
                &name,
                amount_minor,
                kind::TOPUP,
                None,
                None,
                None,
                i.now_ms(),
            )
        })
        .await
}

pub(crate) enum UserFlag {
    Frozen(bool),
    Unlock,
}

pub(crate) async fn set_flag(
    inner: &Arc<Inner>,
    user: &str,
    flag: UserFlag,
) -> Result<(), WalletError> {
    let name = user.to_string();
    inner
        .db
        .write(move |conn| {
            let n = match flag {
                UserFlag::Frozen(f) => conn.exec_cached(
                    "UPDATE users SET frozen = ?2 WHERE name = ?1",
                    params![name, f],
                )?,
                UserFlag::Unlock => conn.exec_cached(
                    "UPDATE users SET password_locked = 0, password_failures = 0 WHERE name = ?1",
                    params![name],
                )?,
            };
            if n == 0 {
                return Err(WalletError::UnknownUser(name));
            }
            Ok(())
        })
        .await
}

/// What the customer API needs to know about a user before checking a password.
pub(crate) struct UserAuth {
    pub password_hash: String,
    pub locked: bool,
}

pub(crate) async fn user_auth(
    inner: &Arc<Inner>,
    user: &str,
) -> Result<Option<UserAuth>, WalletError> {
    let name = user.to_string();
    inner
        .db
        .read(move |c| {
            Ok(c.query_row(
                "SELECT password_hash, password_locked FROM users WHERE name = ?1",
                params![name],
                |r| {
                    Ok(UserAuth {
                        password_hash: r.get(0)?,
                        locked: r.get(1)?,
                    })
                },
            )
            .optional()?)
        })
        .await
}

/// A device's fresh credentials, returned once (only hashes of the token are stored).
pub(crate) struct DeviceCredentials {
    pub device_id: String,
    pub token: String,
    pub slot: String,
    pub secret: Vec<u8>,
}

impl DeviceCredentials {
    pub(crate) fn secret_b64(&self) -> String {
        B64.encode(&self.secret)
    }
}

/// A slot no device holds or ever held.
fn fresh_slot(conn: &Connection) -> Result<String, WalletError> {
    for _ in 0..32 {
        let mut b = [0u8; 8];
        random_bytes(&mut b);
        let slot = format!("{:08}", u64::from_be_bytes(b) % 100_000_000);
        let taken: bool = conn.query_row_cached(
            "SELECT EXISTS (SELECT 1 FROM devices WHERE slot = ?1) \
             OR EXISTS (SELECT 1 FROM retired_slots WHERE slot = ?1)",
            params![slot],
            |r| r.get(0),
        )?;
        if !taken {
            return Ok(slot);
        }
    }
    Err(WalletError::Corrupt(
        "no free device slot found in 32 tries".into(),
    ))
}

fn new_credentials(inner: &Inner, conn: &Connection) -> Result<DeviceCredentials, WalletError> {
    let mut secret = vec![0u8; SECRET_LEN];
    random_bytes(&mut secret);
    Ok(DeviceCredentials {
        device_id: inner.new_id("WD"),
        token: random_token(32),
        slot: fresh_slot(conn)?,
        secret,
    })
}

/// The result of a password attempt outside a challenge (device registration).
pub(crate) enum RegisterOutcome {
    Registered(DeviceCredentials),
    WrongPassword { remaining: u32 },
    Locked,
}

pub(crate) async fn register_device(
    inner: &Arc<Inner>,
    user: String,
    device_name: Option<String>,
    password_ok: bool,
) -> Result<RegisterOutcome, WalletError> {
    let i = inner.clone();
    inner
        .db
        .write(move |conn| {
            let u =
                load_user(conn, &user)?.ok_or_else(|| WalletError::UnknownUser(user.clone()))?;
            if u.limits.password_locked {
                return Ok(RegisterOutcome::Locked);
            }
            if !password_ok {
                let failures = u.password_failures.saturating_add(1);
                let max = i.config.password_max_attempts;
                let locked = failures >= max;
                conn.exec_cached(
                    "UPDATE users SET password_failures = ?2, password_locked = ?3 WHERE name = ?1",
                    params![user, failures, locked],
                )?;
                if locked {
                    return Ok(RegisterOutcome::Locked);
                }
                return Ok(RegisterOutcome::WrongPassword {
                    remaining: max - failures,
                });
            }
            conn.exec_cached(
                "UPDATE users SET password_failures = 0 WHERE name = ?1",
                params![user],
            )?;
            let creds = new_credentials(&i, conn)?;
            let now_ms = i.now_ms();
            conn.exec_cached(
                "INSERT INTO devices (device_id, user_name, device_name, token_hash, slot, secret, \
                 created_at_ms, rotated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                params![
                    creds.device_id,
                    user,
                    device_name,
                    sha256_hex(creds.token.as_bytes()),
                    creds.slot,
                    creds.secret,
                    now_ms
                ],
            )?;
            Ok(RegisterOutcome::Registered(creds))
        })
        .await
}

/// Provisions `count` devices for a user in one transaction, without a password: the operator's
/// path (load tests, fleet set-up), not the customer's.
pub(crate) async fn provision_devices(
    inner: &Arc<Inner>,
    user: String,
    count: usize,
) -> Result<Vec<DeviceCredentials>, WalletError> {
    let i = inner.clone();
    inner
        .db
        .write(move |conn| {
            load_user(conn, &user)?.ok_or_else(|| WalletError::UnknownUser(user.clone()))?;
            let now_ms = i.now_ms();
            let mut out = Vec::with_capacity(count);
            for _ in 0..count {
                let creds = new_credentials(&i, conn)?;
                conn.exec_cached(
                    "INSERT INTO devices (device_id, user_name, device_name, token_hash, slot, secret, \
                     created_at_ms, rotated_at_ms) VALUES (?1, ?2, 'provisioned', ?3, ?4, ?5, ?6, ?6)",
                    params![
                        creds.device_id,
                        user,
                        sha256_hex(creds.token.as_bytes()),
                        creds.slot,
                        creds.secret,
                        now_ms
                    ],
                )?;
                out.push(creds);
            }
            Ok(out)
        })
        .await
}

/// Replaces a device's slot, secret and token; the old slot is retired for good.
pub(crate) async fn rotate_device(
    inner: &Arc<Inner>,
    device_id: String,
) -> Result<DeviceCredentials, WalletError> {
    let i = inner.clone();
    inner
        .db
        .write(move |conn| {
            let now_ms = i.now_ms();
            let old_slot: String = conn.query_row_cached(
                "SELECT slot FROM devices WHERE device_id = ?1",
                params![device_id],
                |r| r.get(0),
            )?;
            let mut creds = new_credentials(&i, conn)?;
            creds.device_id = device_id.clone();
            conn.exec_cached(
                "INSERT INTO retired_slots (slot, device_id, retired_at_ms) VALUES (?1, ?2, ?3)",
                params![old_slot, device_id, now_ms],
            )?;
            conn.exec_cached(
                "UPDATE devices SET slot = ?2, secret = ?3, token_hash = ?4, \
                 rotated_at_ms = ?5 WHERE device_id = ?1",
                params![
                    device_id,
                    creds.slot,
                    creds.secret,
                    sha256_hex(creds.token.as_bytes()),
                    now_ms
                ],
            )?;
            Ok(creds)
        })
        .await
}

/// The device and user a bearer token belongs to.
pub(crate) async fn device_by_token(
    inner: &Arc<Inner>,
    token: &str,
) -> Result<Option<(String, String)>, WalletError> {
    let h = sha256_hex(token.as_bytes());
    inner
        .db
        .read(move |c| {
            Ok(c.query_row(
                "SELECT device_id, user_name FROM devices WHERE token_hash = ?1",
                params![h],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })
        .await
}

pub(crate) struct BalanceView {
    pub balance_minor: i64,
    pub frozen: bool,
    pub locked: bool,
}

pub(crate) async fn balance_view(
    inner: &Arc<Inner>,
    user: String,
) -> Result<BalanceView, WalletError> {
    inner
        .db
        .read(move |c| {
            c.query_row(
                "SELECT balance_minor, frozen, password_locked FROM users WHERE name = ?1",
                params![user],
                |r| {
                    Ok(BalanceView {
                        balance_minor: r.get(0)?,
                        frozen: r.get(1)?,
                        locked: r.get(2)?,
                    })
                },
            )
            .optional()?
            .ok_or(WalletError::UnknownUser(user))
        })
        .await
}

pub(crate) struct HistoryRow {
    pub kind: String,
    pub amount_minor: i64,
    pub status: String,
    pub merchant_name: Option<String>,
    pub payment_request_id: Option<String>,
    pub at_ms: i64,
}

/// Newest first: every payment attempt of the user (with its state) and every credit.
pub(crate) async fn history(
    inner: &Arc<Inner>,
    user: String,
    limit: usize,
) -> Result<Vec<HistoryRow>, WalletError> {
    let limit = i64::try_from(limit).unwrap_or(100);
    inner
        .db
        .read(move |c| {
            let mut out = Vec::new();
            let mut st = c.prepare(
                "SELECT state, amount_minor, merchant_name, payment_request_id, created_at_ms \
                 FROM payments WHERE user_name = ?1 ORDER BY created_at_ms DESC LIMIT ?2",
            )?;
            for row in st.query_map(params![user, limit], |r| {
                Ok(HistoryRow {
                    kind: kind::PAYMENT.to_string(),
                    status: r.get(0)?,
                    amount_minor: -r.get::<_, i64>(1)?,
                    merchant_name: r.get(2)?,
                    payment_request_id: r.get(3)?,
                    at_ms: r.get(4)?,
                })
            })? {
                out.push(row?);
            }
            let mut st = c.prepare(
                "SELECT kind, amount_minor, merchant_name, payment_request_id, at_ms FROM ledger \
                 WHERE user_name = ?1 AND kind <> 'PAYMENT' ORDER BY entry_id DESC LIMIT ?2",
            )?;
            for row in st.query_map(params![user, limit], |r| {
                Ok(HistoryRow {
                    kind: r.get(0)?,
                    amount_minor: r.get(1)?,
                    status: "SUCCESS".to_string(),
                    merchant_name: r.get(2)?,
                    payment_request_id: r.get(3)?,
                    at_ms: r.get(4)?,
                })
            })? {
                out.push(row?);
            }
            out.sort_by_key(|h| std::cmp::Reverse(h.at_ms));
            out.truncate(usize::try_from(limit).unwrap_or(100));
            Ok(out)
        })
        .await
}

// ---------------------------------------------------------------------------------------------
// outbox

pub(crate) struct DueNotification {
    pub notify_id: i64,
    pub payment_request_id: String,
    pub url: String,
    pub body: String,
    pub n_attempts: u32,
}

pub(crate) async fn due_notifications(
    inner: &Arc<Inner>,
    limit: usize,
) -> Result<Vec<DueNotification>, WalletError> {
    let now_ms = inner.now_ms();
    let limit = i64::try_from(limit).unwrap_or(64);
    inner
        .db
        .read(move |c| {
            let mut st = c.prepare(
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
        })
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
        .db
        .write(move |conn| {
            let now_ms = i.now_ms();
            let n = n_attempts_before.saturating_add(1);
            match error {
                None => conn.exec_cached(
                    "UPDATE notify_outbox SET n_attempts = ?2, delivered_at_ms = ?3, last_error = NULL \
                     WHERE notify_id = ?1",
                    params![notify_id, n, now_ms],
                )?,
                Some(e) => {
                    let schedule = &i.config.notify_retry_ms;
                    let idx = usize::try_from(n).unwrap_or(usize::MAX).min(schedule.len() - 1);
                    let delay = i64::try_from(schedule[idx]).unwrap_or(i64::MAX);
                    conn.exec_cached(
                        "UPDATE notify_outbox SET n_attempts = ?2, next_attempt_at_ms = ?3, \
                         last_error = ?4 WHERE notify_id = ?1",
                        params![notify_id, n, now_ms.saturating_add(delay), e],
                    )?
                }
            };
            Ok(())
        })
        .await
}

pub(crate) async fn pending_notifications(inner: &Arc<Inner>) -> Result<usize, WalletError> {
    inner
        .db
        .read(|c| {
            let n: i64 = c.query_row(
                "SELECT COUNT(*) FROM notify_outbox WHERE delivered_at_ms IS NULL",
                [],
                |r| r.get(0),
            )?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
        .await
}

// ---------------------------------------------------------------------------------------------
// audit

/// One violated invariant found by [`crate::Wallet::audit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFinding {
    pub subject: String,
    pub problem: String,
}

pub(crate) async fn audit(inner: &Arc<Inner>) -> Result<Vec<AuditFinding>, WalletError> {
    inner
        .db
        .read(|c| {
            let mut findings = Vec::new();
            let mut st = c.prepare(
                "SELECT u.name, u.balance_minor, COALESCE((SELECT SUM(l.amount_minor) FROM ledger l \
                 WHERE l.user_name = u.name), 0) FROM users u ORDER BY u.name",
            )?;
            let users = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
            for u in users {
                let (name, balance, sum) = u?;
                if balance != sum {
                    findings.push(AuditFinding {
                        subject: format!("user {name}"),
                        problem: format!("balance {balance} but ledger sums to {sum}"),
                    });
                }
                if balance < 0 {
                    findings.push(AuditFinding {
                        subject: format!("user {name}"),
                        problem: format!("negative balance {balance}"),
                    });
                }
            }
            // The daily totals the limit check reads agree with the payments they summarise.
            let mut st = c.prepare(
                "SELECT user_name, day, SUM(expected), SUM(stored) FROM ( \
                   SELECT user_name, paid_at_ms / 86400000 AS day, amount_minor AS expected, 0 AS stored \
                   FROM payments WHERE state = 'SUCCESS' AND reversed_at_ms IS NULL \
                     AND paid_at_ms IS NOT NULL AND user_name IS NOT NULL \
                   UNION ALL SELECT user_name, day, 0, paid_minor FROM user_daily) \
                 GROUP BY user_name, day HAVING SUM(expected) != SUM(stored)",
            )?;
            let days = st.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
            })?;
            for d in days {
                let (name, day, expected, stored) = d?;
                findings.push(AuditFinding {
                    subject: format!("user {name}"),
                    problem: format!("day {day}: daily total {stored} but its payments sum to {expected}"),
                });
            }
            let mut st = c.prepare(
                "SELECT p.payment_request_id, p.state, p.amount_minor, p.reversed_at_ms IS NOT NULL, \
                 p.refunded_minor, \
                 COALESCE((SELECT SUM(amount_minor) FROM ledger l WHERE l.payment_request_id = p.payment_request_id AND l.kind = 'PAYMENT'), 0), \
                 (SELECT COUNT(*) FROM ledger l WHERE l.payment_request_id = p.payment_request_id AND l.kind = 'PAYMENT'), \
                 COALESCE((SELECT SUM(amount_minor) FROM ledger l WHERE l.payment_request_id = p.payment_request_id AND l.kind = 'REVERSAL'), 0), \
                 COALESCE((SELECT SUM(amount_minor) FROM ledger l WHERE l.payment_request_id = p.payment_request_id AND l.kind = 'REFUND'), 0), \
                 COALESCE((SELECT SUM(amount_minor) FROM refunds r WHERE r.payment_request_id = p.payment_request_id), 0) \
                 FROM payments p",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, bool>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, i64>(8)?,
                    r.get::<_, i64>(9)?,
                ))
            })?;
            for row in rows {
                let (prid, state, amount, reversed, refunded, debit, n_debits, reversal, refund_credit, refund_rows) = row?;
                let mut bad = |problem: String| {
                    findings.push(AuditFinding {
                        subject: format!("payment {prid}"),
                        problem,
                    })
                };
                let paid = state == "SUCCESS";
                let (want_debit, want_n) = if paid { (-amount, 1) } else { (0, 0) };
                if debit != want_debit || n_debits != want_n {
                    bad(format!("state {state} but {n_debits} debit rows summing to {debit}"));
                }
                let want_reversal = if reversed { amount } else { 0 };
                if reversal != want_reversal {
                    bad(format!("reversal credits {reversal}, expected {want_reversal}"));
                }
                if refund_credit != refunded || refund_rows != refunded {
                    bad(format!("refunded {refunded}, ledger {refund_credit}, refund rows {refund_rows}"));
                }
                if refunded + want_reversal > amount.max(0) && paid {
                    bad(format!("refunds {refunded} plus reversal {want_reversal} exceed paid {amount}"));
                }
            }
            Ok(findings)
        })
        .await
}
