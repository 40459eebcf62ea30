//! The acquirer's tables. Existing stores open unchanged: every statement is
//! `CREATE … IF NOT EXISTS`, and the stored words (`PROCESSING`, `FAIL`, …) are fixed.

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
