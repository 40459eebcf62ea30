//! The wallet's tables, exactly as every release has created them: an existing store opens
//! unchanged (`CREATE … IF NOT EXISTS`, no renames). The guessing counters' table comes from
//! `paycode_db::guess_counters` and is created beside these.

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
