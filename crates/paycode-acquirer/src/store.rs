//! The acquirer's tables and every SQL statement that touches them.
//!
//! Functions here take a `&Connection` and are called inside `Db::write` / `Db::read` closures,
//! so the service composes several of them into one atomic group-commit job. The SQL is plain
//! and portable (no SQLite-only syntax beyond `INSERT … ON CONFLICT`, which PostgreSQL shares);
//! times are integer unix milliseconds, amounts integer minor units.

use paycode_core::ResultCode;
use paycode_core::ledger::{JournalEntry, Side};
use paycode_core::payment::{PaymentState, RefundState};
use paycode_db::DbError;
use paycode_db::ExecCached;
use paycode_db::rusqlite::types::Type;
use paycode_db::rusqlite::{self, Connection, OptionalExtension, Row, params};

pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS clients (
    client_id     TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    status        TEXT NOT NULL,          -- ACTIVE | SUSPENDED
    notify_url    TEXT,
    created_ms    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS client_keys (
    client_id     TEXT NOT NULL REFERENCES clients(client_id),
    key_version   INTEGER NOT NULL,
    public_key    TEXT NOT NULL,          -- base64 SPKI
    active        INTEGER NOT NULL,
    PRIMARY KEY (client_id, key_version)
);
-- The merchants a client may act for: itself (direct) or its sub-merchants (ISV / SI).
CREATE TABLE IF NOT EXISTS merchants (
    client_id             TEXT NOT NULL REFERENCES clients(client_id),
    reference_merchant_id TEXT NOT NULL,
    name                  TEXT NOT NULL,
    mcc                   TEXT NOT NULL,
    status                TEXT NOT NULL,  -- ACTIVE | SUSPENDED
    currencies            TEXT NOT NULL,  -- comma-separated transaction currencies
    settlement_currency   TEXT NOT NULL,
    max_amount_minor      INTEGER,        -- per payment, in the transaction currency
    notify_url            TEXT,
    fee_bps               INTEGER NOT NULL DEFAULT 0,   -- merchant discount rate
    time_zone             TEXT NOT NULL DEFAULT 'UTC',  -- IANA zone of the settlement cut-off
    cutoff_minutes        INTEGER NOT NULL DEFAULT 0,   -- local cut-off time, minutes after midnight
    PRIMARY KEY (client_id, reference_merchant_id)
);
CREATE TABLE IF NOT EXISTS stores (
    client_id             TEXT NOT NULL,
    reference_merchant_id TEXT NOT NULL,
    reference_store_id    TEXT NOT NULL,
    name                  TEXT NOT NULL,
    mcc                   TEXT NOT NULL,
    PRIMARY KEY (client_id, reference_merchant_id, reference_store_id)
);
CREATE TABLE IF NOT EXISTS wallets (
    name          TEXT PRIMARY KEY,
    psp_name      TEXT NOT NULL,
    base_url      TEXT NOT NULL,
    public_key    TEXT NOT NULL,          -- base64 SPKI: verifies the wallet's answers and notifications
    currencies    TEXT NOT NULL,
    enabled       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS routes (
    route_id      INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL,          -- CII | REGEX
    pattern       TEXT NOT NULL,
    wallet        TEXT NOT NULL REFERENCES wallets(name),
    priority      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS payments (
    payment_id            TEXT PRIMARY KEY,
    client_id             TEXT NOT NULL,
    payment_request_id    TEXT NOT NULL,
    request_hash          TEXT NOT NULL,
    reference_merchant_id TEXT NOT NULL,
    reference_store_id    TEXT,
    merchant_name         TEXT NOT NULL,
    store_name            TEXT,
    terminal_id           TEXT,
    amount_minor          INTEGER NOT NULL,
    currency              TEXT NOT NULL,
    wallet                TEXT NOT NULL,
    psp_name              TEXT NOT NULL,
    code_masked           TEXT NOT NULL,
    pay_to_minor          INTEGER NOT NULL,
    pay_to_currency       TEXT NOT NULL,
    payment_quote         TEXT,           -- JSON of the wire quote, when currencies differ
    settle_minor          INTEGER NOT NULL,
    settle_currency       TEXT NOT NULL,
    settlement_quote      TEXT,
    fee_minor             INTEGER NOT NULL, -- merchant discount fee, settlement currency
    status                TEXT NOT NULL,  -- PROCESSING | SUCCESS | FAIL | CANCELLED
    result_code           TEXT NOT NULL,
    result_message        TEXT NOT NULL,
    wallet_payment_id     TEXT,
    psp_customer_id       TEXT,
    notify_url            TEXT,
    created_ms            INTEGER NOT NULL,
    expires_ms            INTEGER NOT NULL,
    paid_ms               INTEGER,
    cancelled_ms          INTEGER,
    cancel_requested_ms   INTEGER,        -- a merchant cancel is under way: refunds wait
    updated_ms            INTEGER NOT NULL,
    next_check_ms         INTEGER,        -- when the reconciler next asks the wallet (PROCESSING only)
    n_checks              INTEGER NOT NULL DEFAULT 0,
    UNIQUE (client_id, payment_request_id)
);
CREATE INDEX IF NOT EXISTS payments_due ON payments (next_check_ms);
CREATE INDEX IF NOT EXISTS payments_created ON payments (created_ms);
CREATE TABLE IF NOT EXISTS refunds (
    refund_id             TEXT PRIMARY KEY,
    client_id             TEXT NOT NULL,
    refund_request_id     TEXT NOT NULL,
    request_hash          TEXT NOT NULL,
    payment_id            TEXT NOT NULL REFERENCES payments(payment_id),
    amount_minor          INTEGER NOT NULL,
    currency              TEXT NOT NULL,
    wallet_amount_minor   INTEGER NOT NULL,
    wallet_currency       TEXT NOT NULL,
    settle_minor          INTEGER NOT NULL,
    settle_currency       TEXT NOT NULL,
    settlement_quote      TEXT,
    fee_minor             INTEGER NOT NULL, -- fee returned to the merchant, settlement currency
    status                TEXT NOT NULL,  -- PROCESSING | SUCCESS | FAIL
    result_code           TEXT NOT NULL,
    result_message        TEXT NOT NULL,
    reason                TEXT,
    notify_url            TEXT,
    created_ms            INTEGER NOT NULL,
    refunded_ms           INTEGER,
    next_check_ms         INTEGER,
    UNIQUE (client_id, refund_request_id)
);
CREATE INDEX IF NOT EXISTS refunds_payment ON refunds (payment_id);
CREATE INDEX IF NOT EXISTS refunds_due ON refunds (next_check_ms);
-- Every quote given out (payments, refunds, inquireExchangeRate), for audit.
CREATE TABLE IF NOT EXISTS quotes (
    quote_id      TEXT PRIMARY KEY,
    pair          TEXT NOT NULL,
    price         TEXT NOT NULL,
    start_ms      INTEGER NOT NULL,
    expiry_ms     INTEGER NOT NULL,
    purpose       TEXT NOT NULL           -- PAYMENT | SETTLEMENT | REFUND | REFUND_SETTLEMENT | INQUIRY
);
-- The rate table in the rate-file format (one row), replaced whole by the admin API.
CREATE TABLE IF NOT EXISTS fx_rates (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    rate_file     TEXT NOT NULL,
    updated_ms    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS journal_entries (
    entry_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL,
    payment_id    TEXT,
    refund_id     TEXT,
    created_ms    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_payment ON journal_entries (payment_id);
CREATE TABLE IF NOT EXISTS postings (
    entry_id      INTEGER NOT NULL REFERENCES journal_entries(entry_id),
    idx           INTEGER NOT NULL,
    account       TEXT NOT NULL,
    side          TEXT NOT NULL,          -- D | C
    amount_minor  INTEGER NOT NULL,
    currency      TEXT NOT NULL,
    PRIMARY KEY (entry_id, idx)
);
-- Debit-positive running balance per account, kept in the same transaction as the postings.
CREATE TABLE IF NOT EXISTS account_balances (
    account       TEXT PRIMARY KEY,
    currency      TEXT NOT NULL,
    balance_minor INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    outbox_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL,          -- PAYMENT_RESULT | REFUND_RESULT
    payment_id    TEXT NOT NULL,
    refund_id     TEXT,
    client_id     TEXT NOT NULL,          -- signs as this client id
    url           TEXT NOT NULL,
    body          TEXT NOT NULL,
    status        TEXT NOT NULL,          -- PENDING | DELIVERED | PARKED
    n_attempts    INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    last_error    TEXT,
    created_ms    INTEGER NOT NULL,
    delivered_ms  INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_ms);
-- A payment's timeline: state changes, wallet calls, notification attempts, conflicts.
CREATE TABLE IF NOT EXISTS payment_events (
    event_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_id    TEXT NOT NULL,
    at_ms         INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    detail        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS payment_events_payment ON payment_events (payment_id);
-- Settlement and clearing (settlement.rs). Every settled event (a payment, a refund, the cancel
-- of a paid payment) once, keyed by transaction and kind, so it lands in exactly one batch and
-- one clearing; `batch_id` / `clearing_id` are set once, when that batch closes.
CREATE TABLE IF NOT EXISTS settlement_items (
    transaction_id        TEXT NOT NULL,
    kind                  TEXT NOT NULL,  -- PAYMENT | REFUND | CANCEL
    payment_id            TEXT NOT NULL,
    merchant              TEXT NOT NULL,  -- ledger name: client_id/reference_merchant_id
    client_id             TEXT NOT NULL,
    reference_merchant_id TEXT NOT NULL,
    reference_store_id    TEXT,
    transaction_request_id TEXT NOT NULL,
    payment_method_type   TEXT NOT NULL,
    wallet                TEXT NOT NULL,
    psp_name              TEXT NOT NULL,
    amount_minor          INTEGER NOT NULL, -- transaction amount (positive magnitude)
    currency              TEXT NOT NULL,
    wallet_amount_minor   INTEGER NOT NULL,
    wallet_currency       TEXT NOT NULL,
    settle_minor          INTEGER NOT NULL, -- gross, settlement currency
    settle_currency       TEXT NOT NULL,
    quote_price           TEXT,
    fee_minor             INTEGER NOT NULL, -- charged (payment) or returned (refund, cancel)
    event_ms              INTEGER NOT NULL,
    settle_due_ms         INTEGER NOT NULL, -- end of its merchant business day
    batch_id              TEXT,
    clearing_due_ms       INTEGER NOT NULL, -- end of its UTC day
    clearing_id           TEXT,
    PRIMARY KEY (transaction_id, kind)
);
CREATE INDEX IF NOT EXISTS settlement_items_unsettled ON settlement_items (settle_due_ms) WHERE batch_id IS NULL;
CREATE INDEX IF NOT EXISTS settlement_items_uncleared ON settlement_items (clearing_due_ms) WHERE clearing_id IS NULL;
CREATE INDEX IF NOT EXISTS settlement_items_batch ON settlement_items (batch_id);
CREATE INDEX IF NOT EXISTS settlement_items_clearing ON settlement_items (clearing_id);
CREATE TABLE IF NOT EXISTS settlement_batches (
    batch_id              TEXT PRIMARY KEY,
    merchant              TEXT NOT NULL,
    currency              TEXT NOT NULL,
    business_day          INTEGER NOT NULL, -- days since 1970-01-01 in the merchant's calendar
    seq                   INTEGER NOT NULL, -- 1, or more when a day was closed early
    utc_offset_s          INTEGER NOT NULL,
    cutoff_local_s        INTEGER NOT NULL,
    item_count            INTEGER NOT NULL,
    gross_minor           INTEGER NOT NULL,
    fee_minor             INTEGER NOT NULL,
    net_minor             INTEGER NOT NULL,
    entry_id              INTEGER,          -- payout or collection entry (none when net is zero)
    closed_ms             INTEGER NOT NULL,
    files_written_ms      INTEGER,
    UNIQUE (merchant, currency, business_day, seq)
);
CREATE INDEX IF NOT EXISTS settlement_batches_unwritten ON settlement_batches (closed_ms) WHERE files_written_ms IS NULL;
CREATE TABLE IF NOT EXISTS clearing_batches (
    clearing_id           TEXT PRIMARY KEY,
    wallet                TEXT NOT NULL,
    currency              TEXT NOT NULL,
    business_day          INTEGER NOT NULL, -- UTC day
    seq                   INTEGER NOT NULL,
    item_count            INTEGER NOT NULL,
    net_minor             INTEGER NOT NULL,
    entry_id              INTEGER,
    closed_ms             INTEGER NOT NULL,
    files_written_ms      INTEGER,
    UNIQUE (wallet, currency, business_day, seq)
);
CREATE INDEX IF NOT EXISTS settlement_batches_entry ON settlement_batches (entry_id);
CREATE INDEX IF NOT EXISTS clearing_batches_entry ON clearing_batches (entry_id);
CREATE INDEX IF NOT EXISTS clearing_batches_unwritten ON clearing_batches (closed_ms) WHERE files_written_ms IS NULL;
-- How far the settlement sweep has taken events into settlement_items (one row).
CREATE TABLE IF NOT EXISTS settlement_cursor (
    id                    INTEGER PRIMARY KEY CHECK (id = 1),
    swept_ms              INTEGER NOT NULL,
    next_sweep_ms         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_paid ON payments (paid_ms) WHERE paid_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS payments_cancelled ON payments (cancelled_ms) WHERE cancelled_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS refunds_refunded ON refunds (refunded_ms) WHERE refunded_ms IS NOT NULL;
"#;

/// What a storage function can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row the statement must find is not there.
    #[error("{0} not found")]
    NotFound(String),
    /// An insert collided with an existing row on this key (`table.column`).
    #[error("a row with this {key} already exists")]
    Unique { key: String },
    /// A stored value the acquirer never writes, or stored facts that contradict each other.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(DbError),
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> StoreError {
        match e {
            DbError::Sqlite(e) => StoreError::from(e),
            other => StoreError::Database(other),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        match &e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound("row".to_string()),
            rusqlite::Error::SqliteFailure(f, Some(msg))
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                // "UNIQUE constraint failed: payments.client_id, payments.payment_request_id"
                let key = msg.rsplit(": ").next().unwrap_or(msg).to_string();
                StoreError::Unique { key }
            }
            // A stored value of the wrong type, or one the acquirer never writes (the row
            // readers name the row and the value): the row is corrupt, not the query.
            rusqlite::Error::FromSqlConversionFailure(column, _, why) => {
                StoreError::Corrupt(format!("column {column}: {why}"))
            }
            rusqlite::Error::InvalidColumnType(column, name, ty) => {
                StoreError::Corrupt(format!("column {column} ({name}) holds a {ty}"))
            }
            _ => StoreError::Database(DbError::Sqlite(e)),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

fn corrupt_column(column: usize, why: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, Type::Text, why.into())
}

/// A result code the core does not know fails the read (and becomes [`StoreError::Corrupt`]).
fn result_code_at(
    r: &Row<'_>,
    column: usize,
    row: &dyn Fn() -> String,
) -> rusqlite::Result<ResultCode> {
    let text: String = r.get(column)?;
    ResultCode::parse(&text)
        .ok_or_else(|| corrupt_column(column, format!("{}: result code {text:?}", row())))
}

/// A time the acquirer writes is unix milliseconds within chrono's range; anything else is a
/// corrupt row, not 1970.
fn ms_at(r: &Row<'_>, column: usize, row: &dyn Fn() -> String) -> rusqlite::Result<i64> {
    let ms: i64 = r.get(column)?;
    checked_ms(ms, column, row)
}

fn opt_ms_at(
    r: &Row<'_>,
    column: usize,
    row: &dyn Fn() -> String,
) -> rusqlite::Result<Option<i64>> {
    let ms: Option<i64> = r.get(column)?;
    ms.map(|ms| checked_ms(ms, column, row)).transpose()
}

fn checked_ms(ms: i64, column: usize, row: &dyn Fn() -> String) -> rusqlite::Result<i64> {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(_) if ms >= 0 => Ok(ms),
        _ => Err(corrupt_column(
            column,
            format!("{}: time {ms} ms is out of range", row()),
        )),
    }
}

/// A payment as stored.
#[derive(Debug, Clone)]
pub struct PaymentRow {
    pub payment_id: String,
    pub client_id: String,
    pub payment_request_id: String,
    pub request_hash: String,
    pub reference_merchant_id: String,
    pub reference_store_id: Option<String>,
    pub merchant_name: String,
    pub store_name: Option<String>,
    pub terminal_id: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub wallet: String,
    pub psp_name: String,
    pub code_masked: String,
    pub pay_to_minor: i64,
    pub pay_to_currency: String,
    pub payment_quote: Option<String>,
    pub settle_minor: i64,
    pub settle_currency: String,
    pub settlement_quote: Option<String>,
    pub fee_minor: i64,
    /// Parsed from `status` (and, when failed, `result_code`) when the row is read.
    pub state: PaymentState,
    /// While processing, says whether the wallet waits for the user (`PAYMENT_IN_PROCESS`) or
    /// its answer was lost (`UNKNOWN_EXCEPTION`); once final, the state's code.
    pub result_code: ResultCode,
    pub result_message: String,
    pub wallet_payment_id: Option<String>,
    pub psp_customer_id: Option<String>,
    pub notify_url: Option<String>,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub paid_ms: Option<i64>,
    pub cancelled_ms: Option<i64>,
    pub cancel_requested_ms: Option<i64>,
    pub updated_ms: i64,
    pub next_check_ms: Option<i64>,
    pub n_checks: i64,
}

const PAYMENT_COLUMNS: &str = "payment_id, client_id, payment_request_id, request_hash, \
    reference_merchant_id, reference_store_id, merchant_name, store_name, terminal_id, \
    amount_minor, currency, wallet, psp_name, code_masked, pay_to_minor, pay_to_currency, \
    payment_quote, settle_minor, settle_currency, settlement_quote, status, result_code, \
    result_message, wallet_payment_id, psp_customer_id, notify_url, created_ms, expires_ms, \
    paid_ms, cancelled_ms, updated_ms, next_check_ms, n_checks, cancel_requested_ms, fee_minor";

fn payment_from_row(r: &Row<'_>) -> rusqlite::Result<PaymentRow> {
    let payment_id: String = r.get(0)?;
    let row = || format!("payment {payment_id}");
    let result_code = result_code_at(r, 21, &row)?;
    let status: String = r.get(20)?;
    let state = PaymentState::from_stored(&status, result_code.as_str())
        .ok_or_else(|| corrupt_column(20, format!("{}: status {status:?}", row())))?;
    Ok(PaymentRow {
        created_ms: ms_at(r, 26, &row)?,
        expires_ms: ms_at(r, 27, &row)?,
        paid_ms: opt_ms_at(r, 28, &row)?,
        cancelled_ms: opt_ms_at(r, 29, &row)?,
        updated_ms: ms_at(r, 30, &row)?,
        cancel_requested_ms: opt_ms_at(r, 33, &row)?,
        payment_id,
        client_id: r.get(1)?,
        payment_request_id: r.get(2)?,
        request_hash: r.get(3)?,
        reference_merchant_id: r.get(4)?,
        reference_store_id: r.get(5)?,
        merchant_name: r.get(6)?,
        store_name: r.get(7)?,
        terminal_id: r.get(8)?,
        amount_minor: r.get(9)?,
        currency: r.get(10)?,
        wallet: r.get(11)?,
        psp_name: r.get(12)?,
        code_masked: r.get(13)?,
        pay_to_minor: r.get(14)?,
        pay_to_currency: r.get(15)?,
        payment_quote: r.get(16)?,
        settle_minor: r.get(17)?,
        settle_currency: r.get(18)?,
        settlement_quote: r.get(19)?,
        state,
        result_code,
        result_message: r.get(22)?,
        wallet_payment_id: r.get(23)?,
        psp_customer_id: r.get(24)?,
        notify_url: r.get(25)?,
        next_check_ms: r.get(31)?,
        n_checks: r.get(32)?,
        fee_minor: r.get(34)?,
    })
}

pub fn insert_payment(c: &Connection, p: &PaymentRow) -> StoreResult<()> {
    c.prepare_cached(&format!(
        "INSERT INTO payments ({PAYMENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
         ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, \
         ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35)"
    ))?
    .execute(params![
        p.payment_id,
        p.client_id,
        p.payment_request_id,
        p.request_hash,
        p.reference_merchant_id,
        p.reference_store_id,
        p.merchant_name,
        p.store_name,
        p.terminal_id,
        p.amount_minor,
        p.currency,
        p.wallet,
        p.psp_name,
        p.code_masked,
        p.pay_to_minor,
        p.pay_to_currency,
        p.payment_quote,
        p.settle_minor,
        p.settle_currency,
        p.settlement_quote,
        p.state.status_str(),
        p.result_code.as_str(),
        p.result_message,
        p.wallet_payment_id,
        p.psp_customer_id,
        p.notify_url,
        p.created_ms,
        p.expires_ms,
        p.paid_ms,
        p.cancelled_ms,
        p.updated_ms,
        p.next_check_ms,
        p.n_checks,
        p.cancel_requested_ms,
        p.fee_minor,
    ])?;
    Ok(())
}

/// Writes the mutable part of a payment (state, wallet facts, times, reconciler schedule).
pub fn update_payment(c: &Connection, p: &PaymentRow) -> StoreResult<()> {
    let n = c
        .prepare_cached(
            "UPDATE payments SET status = ?2, result_code = ?3, result_message = ?4, \
             wallet_payment_id = ?5, psp_customer_id = ?6, paid_ms = ?7, cancelled_ms = ?8, \
             updated_ms = ?9, next_check_ms = ?10, n_checks = ?11, cancel_requested_ms = ?12 \
             WHERE payment_id = ?1",
        )?
        .execute(params![
            p.payment_id,
            p.state.status_str(),
            p.result_code.as_str(),
            p.result_message,
            p.wallet_payment_id,
            p.psp_customer_id,
            p.paid_ms,
            p.cancelled_ms,
            p.updated_ms,
            p.next_check_ms,
            p.n_checks,
            p.cancel_requested_ms,
        ])?;
    if n != 1 {
        return Err(StoreError::NotFound(format!("payment {}", p.payment_id)));
    }
    Ok(())
}

pub fn payment_by_id(c: &Connection, payment_id: &str) -> StoreResult<Option<PaymentRow>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE payment_id = ?1"
    ))?
    .query_row([payment_id], payment_from_row)
    .optional()?)
}

pub fn payment_by_request_id(
    c: &Connection,
    client_id: &str,
    payment_request_id: &str,
) -> StoreResult<Option<PaymentRow>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE client_id = ?1 AND payment_request_id = ?2"
    ))?
    .query_row([client_id, payment_request_id], payment_from_row)
    .optional()?)
}

/// PROCESSING payments whose next wallet check is due, oldest first.
pub fn payments_due(c: &Connection, now_ms: i64, limit: usize) -> StoreResult<Vec<PaymentRow>> {
    let rows = c.query_all_cached(
        &format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE next_check_ms IS NOT NULL \
         AND next_check_ms <= ?1 ORDER BY next_check_ms LIMIT ?2"
        ),
        params![now_ms, limit as i64],
        payment_from_row,
    )?;
    Ok(rows)
}

/// Pushes a payment's next check forward only if it is still as the caller saw it; returns
/// whether this caller won the claim (so two reconcilers never work the same payment at once).
pub fn claim_payment_check(
    c: &Connection,
    payment_id: &str,
    seen_next_check_ms: i64,
    lease_until_ms: i64,
) -> StoreResult<bool> {
    let n = c
        .prepare_cached(
            "UPDATE payments SET next_check_ms = ?3, n_checks = n_checks + 1 \
             WHERE payment_id = ?1 AND next_check_ms = ?2 AND status = 'PROCESSING'",
        )?
        .execute(params![payment_id, seen_next_check_ms, lease_until_ms])?;
    Ok(n == 1)
}

/// A refund as stored.
#[derive(Debug, Clone)]
pub struct RefundRow {
    pub refund_id: String,
    pub client_id: String,
    pub refund_request_id: String,
    pub request_hash: String,
    pub payment_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub wallet_amount_minor: i64,
    pub wallet_currency: String,
    pub settle_minor: i64,
    pub settle_currency: String,
    pub settlement_quote: Option<String>,
    pub fee_minor: i64,
    /// Parsed from `status` (and, when failed, `result_code`) when the row is read.
    pub state: RefundState,
    pub result_code: ResultCode,
    pub result_message: String,
    pub reason: Option<String>,
    pub notify_url: Option<String>,
    pub created_ms: i64,
    pub refunded_ms: Option<i64>,
    pub next_check_ms: Option<i64>,
}

const REFUND_COLUMNS: &str = "refund_id, client_id, refund_request_id, request_hash, payment_id, \
    amount_minor, currency, wallet_amount_minor, wallet_currency, settle_minor, settle_currency, \
    status, result_code, result_message, reason, notify_url, created_ms, refunded_ms, next_check_ms, \
    settlement_quote, fee_minor";

fn refund_from_row(r: &Row<'_>) -> rusqlite::Result<RefundRow> {
    let refund_id: String = r.get(0)?;
    let row = || format!("refund {refund_id}");
    let result_code = result_code_at(r, 12, &row)?;
    let status: String = r.get(11)?;
    let state = RefundState::from_stored(&status, result_code.as_str())
        .ok_or_else(|| corrupt_column(11, format!("{}: status {status:?}", row())))?;
    Ok(RefundRow {
        created_ms: ms_at(r, 16, &row)?,
        refunded_ms: opt_ms_at(r, 17, &row)?,
        refund_id,
        client_id: r.get(1)?,
        refund_request_id: r.get(2)?,
        request_hash: r.get(3)?,
        payment_id: r.get(4)?,
        amount_minor: r.get(5)?,
        currency: r.get(6)?,
        wallet_amount_minor: r.get(7)?,
        wallet_currency: r.get(8)?,
        settle_minor: r.get(9)?,
        settle_currency: r.get(10)?,
        state,
        result_code,
        result_message: r.get(13)?,
        reason: r.get(14)?,
        notify_url: r.get(15)?,
        next_check_ms: r.get(18)?,
        settlement_quote: r.get(19)?,
        fee_minor: r.get(20)?,
    })
}

pub fn insert_refund(c: &Connection, r: &RefundRow) -> StoreResult<()> {
    c.prepare_cached(&format!(
        "INSERT INTO refunds ({REFUND_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
         ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
    ))?
    .execute(params![
        r.refund_id,
        r.client_id,
        r.refund_request_id,
        r.request_hash,
        r.payment_id,
        r.amount_minor,
        r.currency,
        r.wallet_amount_minor,
        r.wallet_currency,
        r.settle_minor,
        r.settle_currency,
        r.state.status_str(),
        r.result_code.as_str(),
        r.result_message,
        r.reason,
        r.notify_url,
        r.created_ms,
        r.refunded_ms,
        r.next_check_ms,
        r.settlement_quote,
        r.fee_minor,
    ])?;
    Ok(())
}

pub fn update_refund(c: &Connection, r: &RefundRow) -> StoreResult<()> {
    c.prepare_cached(
        "UPDATE refunds SET status = ?2, result_code = ?3, result_message = ?4, \
         refunded_ms = ?5, next_check_ms = ?6, fee_minor = ?7 WHERE refund_id = ?1",
    )?
    .execute(params![
        r.refund_id,
        r.state.status_str(),
        r.result_code.as_str(),
        r.result_message,
        r.refunded_ms,
        r.next_check_ms,
        r.fee_minor,
    ])?;
    Ok(())
}

pub fn refund_by_id(c: &Connection, refund_id: &str) -> StoreResult<Option<RefundRow>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {REFUND_COLUMNS} FROM refunds WHERE refund_id = ?1"
    ))?
    .query_row([refund_id], refund_from_row)
    .optional()?)
}

pub fn refund_by_request_id(
    c: &Connection,
    client_id: &str,
    refund_request_id: &str,
) -> StoreResult<Option<RefundRow>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {REFUND_COLUMNS} FROM refunds WHERE client_id = ?1 AND refund_request_id = ?2"
    ))?
    .query_row([client_id, refund_request_id], refund_from_row)
    .optional()?)
}

pub fn refunds_of_payment(c: &Connection, payment_id: &str) -> StoreResult<Vec<RefundRow>> {
    let rows = c.query_all_cached(&format!(
        "SELECT {REFUND_COLUMNS} FROM refunds WHERE payment_id = ?1 ORDER BY created_ms, refund_id"
    ), [payment_id], refund_from_row)?;
    Ok(rows)
}

pub fn refunds_due(c: &Connection, now_ms: i64, limit: usize) -> StoreResult<Vec<RefundRow>> {
    let rows = c.query_all_cached(
        &format!(
            "SELECT {REFUND_COLUMNS} FROM refunds WHERE next_check_ms IS NOT NULL \
         AND next_check_ms <= ?1 ORDER BY next_check_ms LIMIT ?2"
        ),
        params![now_ms, limit as i64],
        refund_from_row,
    )?;
    Ok(rows)
}

/// Appends a journal entry and moves the account balances, in the caller's transaction.
pub fn post_entry(
    c: &Connection,
    entry: &JournalEntry,
    payment_id: Option<&str>,
    refund_id: Option<&str>,
    now_ms: i64,
) -> StoreResult<i64> {
    c.prepare_cached(
        "INSERT INTO journal_entries (kind, payment_id, refund_id, created_ms) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![entry.kind(), payment_id, refund_id, now_ms])?;
    let entry_id = c.last_insert_rowid();
    for (idx, p) in entry.postings().iter().enumerate() {
        let amount = p.amount();
        c.prepare_cached(
            "INSERT INTO postings (entry_id, idx, account, side, amount_minor, currency) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            entry_id,
            idx as i64,
            p.account(),
            p.side().as_str(),
            amount.amount_minor(),
            amount.currency().code(),
        ])?;
        let delta = match p.side() {
            Side::Debit => amount.amount_minor(),
            Side::Credit => -amount.amount_minor(),
        };
        c.prepare_cached(
            "INSERT INTO account_balances (account, currency, balance_minor) VALUES (?1, ?2, ?3) \
             ON CONFLICT (account) DO UPDATE SET balance_minor = balance_minor + excluded.balance_minor",
        )?
        .execute(params![p.account(), amount.currency().code(), delta])?;
    }
    Ok(entry_id)
}

/// A queued merchant notification.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub outbox_id: i64,
    pub kind: String,
    pub payment_id: String,
    pub refund_id: Option<String>,
    pub client_id: String,
    pub url: String,
    pub body: String,
    pub status: String,
    pub n_attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub delivered_ms: Option<i64>,
}

const OUTBOX_COLUMNS: &str = "outbox_id, kind, payment_id, refund_id, client_id, url, body, \
    status, n_attempts, next_attempt_ms, last_error, created_ms, delivered_ms";

fn outbox_from_row(r: &Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        outbox_id: r.get(0)?,
        kind: r.get(1)?,
        payment_id: r.get(2)?,
        refund_id: r.get(3)?,
        client_id: r.get(4)?,
        url: r.get(5)?,
        body: r.get(6)?,
        status: r.get(7)?,
        n_attempts: r.get(8)?,
        next_attempt_ms: r.get(9)?,
        last_error: r.get(10)?,
        created_ms: r.get(11)?,
        delivered_ms: r.get(12)?,
    })
}

pub struct NewNotification<'a> {
    pub kind: &'a str,
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
    .execute(params![n.kind, n.payment_id, n.refund_id, n.client_id, n.url, n.body, now_ms])?;
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
    let rows = c.query_all_cached(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'PENDING' AND next_attempt_ms <= ?1 \
         ORDER BY next_attempt_ms LIMIT ?2"
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
    status: &str,
    next_attempt_ms: i64,
    error: Option<&str>,
    now_ms: i64,
) -> StoreResult<()> {
    let delivered = (status == "DELIVERED").then_some(now_ms);
    c.prepare_cached(
        "UPDATE outbox SET status = ?2, n_attempts = n_attempts + 1, next_attempt_ms = ?3, \
         last_error = ?4, delivered_ms = ?5 WHERE outbox_id = ?1",
    )?
    .execute(params![
        outbox_id,
        status,
        next_attempt_ms,
        error,
        delivered
    ])?;
    Ok(())
}

pub fn notifications(
    c: &Connection,
    status: Option<&str>,
    limit: usize,
) -> StoreResult<Vec<OutboxRow>> {
    let rows = c.query_all_cached(
        &format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE (?1 IS NULL OR status = ?1) \
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
                at_ms: r.get(0)?,
                kind: r.get(1)?,
                detail: r.get(2)?,
            })
        },
    )?;
    Ok(rows)
}

/// One posting as stored, for audits and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostingRow {
    pub entry_id: i64,
    pub kind: String,
    pub payment_id: Option<String>,
    pub refund_id: Option<String>,
    pub account: String,
    pub side: String,
    pub amount_minor: i64,
    pub currency: String,
}

pub fn postings_of_payment(c: &Connection, payment_id: &str) -> StoreResult<Vec<PostingRow>> {
    let rows = c.query_all_cached(
        "SELECT e.entry_id, e.kind, e.payment_id, e.refund_id, p.account, p.side, p.amount_minor, \
         p.currency FROM journal_entries e JOIN postings p ON p.entry_id = e.entry_id \
         WHERE e.payment_id = ?1 ORDER BY e.entry_id, p.idx",
        [payment_id],
        |r| {
            Ok(PostingRow {
                entry_id: r.get(0)?,
                kind: r.get(1)?,
                payment_id: r.get(2)?,
                refund_id: r.get(3)?,
                account: r.get(4)?,
                side: r.get(5)?,
                amount_minor: r.get(6)?,
                currency: r.get(7)?,
            })
        },
    )?;
    Ok(rows)
}

pub fn account_balance(c: &Connection, account: &str) -> StoreResult<i64> {
    Ok(c.query_row(
        "SELECT balance_minor FROM account_balances WHERE account = ?1",
        [account],
        |r| r.get(0),
    )
    .optional()?
    .unwrap_or(0))
}

pub fn insert_quote(
    c: &Connection,
    q: &paycode_proto::Quote,
    start_ms: i64,
    expiry_ms: i64,
    purpose: &str,
) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO quotes (quote_id, pair, price, start_ms, expiry_ms, purpose) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (quote_id) DO NOTHING",
    )?
    .execute(params![q.quote_id, q.quote_currency_pair, q.quote_price, start_ms, expiry_ms, purpose])?;
    Ok(())
}

pub fn rate_file(c: &Connection) -> StoreResult<Option<String>> {
    Ok(
        c.query_row("SELECT rate_file FROM fx_rates WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?,
    )
}

pub fn set_rate_file(c: &Connection, text: &str, now_ms: i64) -> StoreResult<()> {
    c.execute(
        "INSERT INTO fx_rates (id, rate_file, updated_ms) VALUES (1, ?1, ?2) \
         ON CONFLICT (id) DO UPDATE SET rate_file = excluded.rate_file, updated_ms = excluded.updated_ms",
        params![text, now_ms],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = Connection::open_in_memory().expect("an in-memory database opens");
        c.execute_batch(SCHEMA).expect("the schema applies");
        c
    }

    fn payment(id: &str) -> PaymentRow {
        PaymentRow {
            payment_id: id.to_string(),
            client_id: "client-1".to_string(),
            payment_request_id: format!("req-{id}"),
            request_hash: "hash".to_string(),
            reference_merchant_id: "M1".to_string(),
            reference_store_id: None,
            merchant_name: "Shop".to_string(),
            store_name: None,
            terminal_id: None,
            amount_minor: 500,
            currency: "SGD".to_string(),
            wallet: "wallet-a".to_string(),
            psp_name: "WalletA".to_string(),
            code_masked: "********1234".to_string(),
            pay_to_minor: 500,
            pay_to_currency: "SGD".to_string(),
            payment_quote: None,
            settle_minor: 500,
            settle_currency: "SGD".to_string(),
            settlement_quote: None,
            fee_minor: 5,
            state: PaymentState::Processing,
            result_code: ResultCode::PAYMENT_IN_PROCESS,
            result_message: String::new(),
            wallet_payment_id: None,
            psp_customer_id: None,
            notify_url: None,
            created_ms: 1_780_000_000_000,
            expires_ms: 1_780_000_060_000,
            paid_ms: None,
            cancelled_ms: None,
            cancel_requested_ms: None,
            updated_ms: 1_780_000_000_000,
            next_check_ms: Some(1_780_000_005_000),
            n_checks: 0,
        }
    }

    fn refund(id: &str, payment_id: &str) -> RefundRow {
        RefundRow {
            refund_id: id.to_string(),
            client_id: "client-1".to_string(),
            refund_request_id: format!("req-{id}"),
            request_hash: "hash".to_string(),
            payment_id: payment_id.to_string(),
            amount_minor: 100,
            currency: "SGD".to_string(),
            wallet_amount_minor: 100,
            wallet_currency: "SGD".to_string(),
            settle_minor: 100,
            settle_currency: "SGD".to_string(),
            settlement_quote: None,
            fee_minor: 1,
            state: RefundState::Success,
            result_code: ResultCode::SUCCESS,
            result_message: String::new(),
            reason: None,
            notify_url: None,
            created_ms: 1_780_000_100_000,
            refunded_ms: Some(1_780_000_100_500),
            next_check_ms: None,
        }
    }

    /// Reads `payment_by_id` after `sql` changed the stored row, and checks it against `want`:
    /// `Ok(state)` or a corrupt-row error whose text contains every listed fragment.
    fn check_payment(c: &Connection, sql: &str, want: Result<PaymentState, &[&str]>) {
        c.execute_batch(sql).expect("the test update applies");
        match (payment_by_id(c, "P1"), want) {
            (Ok(Some(p)), Ok(state)) => assert_eq!(p.state, state, "{sql}"),
            (Err(StoreError::Corrupt(why)), Err(fragments)) => {
                for f in fragments {
                    assert!(why.contains(f), "{sql}: {why} lacks {f}");
                }
            }
            (other, want) => panic!("{sql}: got {other:?}, want {want:?}"),
        }
    }

    #[test]
    fn a_payment_reads_back_as_written() {
        let c = conn();
        let mut p = payment("P1");
        insert_payment(&c, &p).unwrap();
        assert_eq!(
            format!("{:?}", payment_by_id(&c, "P1").unwrap().unwrap()),
            format!("{p:?}")
        );
        p.state = PaymentState::Fail(ResultCode::RISK_REJECT);
        p.result_code = ResultCode::RISK_REJECT;
        p.next_check_ms = None;
        update_payment(&c, &p).unwrap();
        let back = payment_by_request_id(&c, "client-1", "req-P1")
            .unwrap()
            .unwrap();
        assert_eq!(format!("{back:?}"), format!("{p:?}"));
        // The on-disk words are the ones every earlier release wrote.
        let stored: (String, String) = c
            .query_row("SELECT status, result_code FROM payments", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(stored, ("FAIL".to_string(), "RISK_REJECT".to_string()));
        assert!(payment_by_id(&c, "P2").unwrap().is_none());
    }

    /// The stored status is one of the four words the acquirer writes; anything else, an unknown
    /// result code or a time out of range fails the read with an error naming row and value.
    #[test]
    fn a_corrupt_stored_payment_is_an_error_naming_the_row() {
        let c = conn();
        insert_payment(&c, &payment("P1")).unwrap();
        let set = |s: &str, code: &str| {
            format!("UPDATE payments SET status = '{s}', result_code = '{code}'")
        };
        check_payment(&c, &set("SUCCESS", "SUCCESS"), Ok(PaymentState::Success));
        check_payment(
            &c,
            &set("CANCELLED", "ORDER_IS_CLOSED"),
            Ok(PaymentState::Cancelled),
        );
        check_payment(
            &c,
            &set("FAIL", "RISK_REJECT"),
            Ok(PaymentState::Fail(ResultCode::RISK_REJECT)),
        );
        check_payment(
            &c,
            &set("PROCESSING", "UNKNOWN_EXCEPTION"),
            Ok(PaymentState::Processing),
        );
        check_payment(
            &c,
            &set("PAID", "SUCCESS"),
            Err(&["payment P1", "\"PAID\""]),
        );
        check_payment(
            &c,
            &set("success", "SUCCESS"),
            Err(&["payment P1", "\"success\""]),
        );
        check_payment(
            &c,
            &set("FAIL", "NO_SUCH_CODE"),
            Err(&["payment P1", "\"NO_SUCH_CODE\""]),
        );
        check_payment(
            &c,
            "UPDATE payments SET status = 'PROCESSING', result_code = 'PAYMENT_IN_PROCESS', \
             paid_ms = -5",
            Err(&["payment P1", "-5"]),
        );
        check_payment(
            &c,
            "UPDATE payments SET paid_ms = NULL, created_ms = 9223372036854775807",
            Err(&["payment P1", "9223372036854775807"]),
        );
        check_payment(
            &c,
            "UPDATE payments SET created_ms = 'soon'",
            Err(&["column 26"]),
        );
        // A list read fails as a whole rather than skipping the corrupt row.
        c.execute_batch("UPDATE payments SET created_ms = 1, next_check_ms = 1, status = 'X'")
            .unwrap();
        match payments_due(&c, 10, 10) {
            Err(StoreError::Corrupt(why)) => assert!(why.contains("payment P1"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_corrupt_stored_refund_is_an_error_naming_the_row() {
        let c = conn();
        insert_payment(&c, &payment("P1")).unwrap();
        insert_refund(&c, &refund("R1", "P1")).unwrap();
        let back = refund_by_id(&c, "R1").unwrap().unwrap();
        assert_eq!(format!("{back:?}"), format!("{:?}", refund("R1", "P1")));
        for (status, code, want) in [
            (
                "PROCESSING",
                "UNKNOWN_EXCEPTION",
                Some(RefundState::Processing),
            ),
            (
                "FAIL",
                "REFUND_WINDOW_EXCEED",
                Some(RefundState::Fail(ResultCode::REFUND_WINDOW_EXCEED)),
            ),
            ("CANCELLED", "SUCCESS", None),
            ("FAIL", "", None),
        ] {
            c.execute(
                "UPDATE refunds SET status = ?1, result_code = ?2",
                params![status, code],
            )
            .unwrap();
            match (refunds_of_payment(&c, "P1"), want) {
                (Ok(rows), Some(want)) => assert_eq!(rows[0].state, want),
                (Err(StoreError::Corrupt(why)), None) => {
                    assert!(why.contains("refund R1"), "{why}");
                }
                (other, _) => panic!("{status} {code}: {other:?}"),
            }
        }
    }

    #[test]
    fn keys_are_named_in_conflicts() {
        let c = conn();
        insert_payment(&c, &payment("P1")).unwrap();
        let mut same_id = payment("P1");
        same_id.payment_request_id = "req-other".to_string();
        match insert_payment(&c, &same_id) {
            Err(StoreError::Unique { key }) => assert_eq!(key, "payments.payment_id"),
            other => panic!("{other:?}"),
        }
        let mut again = payment("P2");
        again.payment_request_id = "req-P1".to_string();
        match insert_payment(&c, &again) {
            Err(StoreError::Unique { key }) => {
                assert_eq!(key, "payments.client_id, payments.payment_request_id");
            }
            other => panic!("{other:?}"),
        }
        let mut gone = payment("P3");
        gone.state = PaymentState::Success;
        match update_payment(&c, &gone) {
            Err(StoreError::NotFound(what)) => assert_eq!(what, "payment P3"),
            other => panic!("{other:?}"),
        }
    }
}
