//! The risk tables: the operators' rule list (one row, versioned), attempts per merchant and UTC
//! day, the hashes of codes already sent to a wallet (the replay rule), and for the buyer rules:
//! attempts per buyer key and minute, the link from a buyer key (a code's device slot) to the
//! wallet's customer, each customer's paid-amount history, the blocked customers, and the
//! decisions in which a rule fired.
//!
//! Every table is bounded: attempts are kept two days, links 30 days after their last use,
//! histories 180 days after their last payment (`prune_buyer_data`), decisions as long as the
//! payments they explain.

use super::StoreResult;
use paycode_core::risk::{AmountHistory, MinuteAttempts};
use paycode_db::StoreError;
use paycode_db::sql::{Connection, OptionalExtension, params};

pub const RISK_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS risk_rules (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    rules_json    TEXT NOT NULL,
    updated_ms    INTEGER NOT NULL
);
-- Payment attempts per merchant, UTC day and currency (risk velocity and daily amounts).
CREATE TABLE IF NOT EXISTS merchant_daily (
    merchant      TEXT NOT NULL,
    day           INTEGER NOT NULL,
    currency      TEXT NOT NULL,
    amount_minor  INTEGER NOT NULL,
    n_attempts    INTEGER NOT NULL,
    PRIMARY KEY (merchant, day, currency)
);
-- The first 16 bytes of SHA-256 of every code sent to a wallet (never the code itself), by UTC
-- day, for the replay rule. One B-tree (no rowid); pruning drops whole past days.
CREATE TABLE IF NOT EXISTS seen_codes (
    day           INTEGER NOT NULL,
    code_hash     BLOB NOT NULL,
    payment_id    TEXT NOT NULL,
    PRIMARY KEY (day, code_hash)
) WITHOUT ROWID;
"#;

/// Schema version 2: the buyer rules' tables, rule-set versions, decisions, and the registry
/// facts the transaction rules read (merchant country, wallet home countries and contracted
/// transaction currencies).
pub const BUYER_RISK_SCHEMA: &str = r#"
ALTER TABLE risk_rules ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE payments ADD COLUMN buyer TEXT;
ALTER TABLE merchants ADD COLUMN country TEXT;
ALTER TABLE wallets ADD COLUMN countries TEXT NOT NULL DEFAULT '';
ALTER TABLE wallets ADD COLUMN transaction_currencies TEXT NOT NULL DEFAULT '';
-- Keyed tables without a rowid: a new buyer dirties one B-tree page per table, not two (the
-- bench's every payment is a new device, the worst case for these tables).
-- Attempts per buyer key (CII + device slot), minute since the epoch and currency.
CREATE TABLE IF NOT EXISTS buyer_attempts (
    buyer         TEXT NOT NULL,
    minute        INTEGER NOT NULL,
    currency      TEXT NOT NULL,
    amount_minor  INTEGER NOT NULL,
    n_attempts    INTEGER NOT NULL,
    PRIMARY KEY (buyer, minute, currency)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS buyer_attempts_by_minute ON buyer_attempts (minute);
-- Which wallet customer a buyer key belongs to, learnt from the wallet's answers.
CREATE TABLE IF NOT EXISTS buyer_customers (
    buyer         TEXT PRIMARY KEY,
    wallet        TEXT NOT NULL,
    customer_id   TEXT NOT NULL,
    updated_ms    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS buyer_customers_by_customer ON buyer_customers (wallet, customer_id);
-- Paid payments per customer (wallet/customerId, or the buyer key while unknown), scope
-- (M:client/merchant or MCC:code) and currency: count and total, for the unusual-amount rule.
CREATE TABLE IF NOT EXISTS buyer_history (
    customer      TEXT NOT NULL,
    scope         TEXT NOT NULL,
    currency      TEXT NOT NULL,
    n_payments    INTEGER NOT NULL,
    total_minor   INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL,
    PRIMARY KEY (customer, scope, currency)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocked_customers (
    wallet        TEXT NOT NULL,
    customer_id   TEXT NOT NULL,
    reason        TEXT NOT NULL,
    source        TEXT NOT NULL,          -- who blocked: operator or wallet:NAME
    created_ms    INTEGER NOT NULL,
    PRIMARY KEY (wallet, customer_id)
);
-- Decisions in which a rule fired (enforced or shadow); allows with no hit are only on the
-- payment's CREATED event.
CREATE TABLE IF NOT EXISTS risk_decisions (
    payment_id    TEXT PRIMARY KEY,
    created_ms    INTEGER NOT NULL,
    rules_version INTEGER NOT NULL,
    verdict       TEXT NOT NULL,          -- ALLOW | CHALLENGE | REJECT
    hits          TEXT NOT NULL,          -- JSON [{ruleId, action, reason}]
    shadow        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS risk_decisions_by_time ON risk_decisions (created_ms);
"#;

/// The stored rule list and its version.
pub fn stored_rules(c: &Connection) -> StoreResult<Option<(String, i64)>> {
    Ok(c.query_row(
        "SELECT rules_json, version FROM risk_rules WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?)
}

/// The version of the stored rules (0 when none), for other processes to notice a change.
pub fn rules_version(c: &Connection) -> StoreResult<i64> {
    Ok(
        c.query_row("SELECT version FROM risk_rules WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0),
    )
}

/// Replaces the rules; returns the new version (unchanged when the text is the same).
pub fn store_rules(c: &Connection, json: &str, now_ms: i64) -> StoreResult<i64> {
    Ok(c.query_row(
        "INSERT INTO risk_rules (id, rules_json, updated_ms, version) VALUES (1, ?1, ?2, 1) \
         ON CONFLICT (id) DO UPDATE SET rules_json = excluded.rules_json, \
         updated_ms = excluded.updated_ms, \
         version = risk_rules.version + (CASE WHEN risk_rules.rules_json = excluded.rules_json \
         THEN 0 ELSE 1 END) RETURNING version",
        params![json, now_ms],
        |r| r.get(0),
    )?)
}

fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(60_000)
}

/// Counts one attempt for a buyer key. Its upsert locks the buyer's row of the minute, so two
/// payments of one device decide one after the other on every engine.
pub fn count_buyer_attempt(
    c: &Connection,
    buyer: &str,
    currency: &str,
    amount_minor: i64,
    now_ms: i64,
) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO buyer_attempts (buyer, minute, currency, amount_minor, n_attempts) \
         VALUES (?1, ?2, ?3, ?4, 1) ON CONFLICT (buyer, minute, currency) DO UPDATE SET \
         amount_minor = buyer_attempts.amount_minor + excluded.amount_minor, \
         n_attempts = buyer_attempts.n_attempts + 1",
    )?
    .execute(params![buyer, minute_of(now_ms), currency, amount_minor])?;
    Ok(())
}

/// What the buyer rules read about one buyer, in one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuyerRead {
    /// Attempts since `since_ms` of every buyer key of the customer behind the buyer (the key
    /// itself, and once a wallet answer linked it, every other key linked to that customer),
    /// per minute and currency (when asked for).
    pub attempts: Vec<MinuteAttempts>,
    /// The customer key (`wallet/customerId`) the buyer key is linked to.
    pub customer: Option<String>,
    pub blocked: bool,
    /// The paid history in `currency` at the two scopes, under the customer key (or the buyer
    /// key while unlinked), when asked for.
    pub history: [AmountHistory; 2],
}

pub fn buyer_read(
    c: &Connection,
    buyer: &str,
    since_ms: Option<i64>,
    currency: &str,
    scopes: Option<[&str; 2]>,
) -> StoreResult<BuyerRead> {
    let [scope_m, scope_mcc] = scopes.unwrap_or(["", ""]);
    let rows: Vec<(String, i64, String, i64, i64)> = c.query_all_cached(
        "WITH link AS (SELECT wallet, customer_id FROM buyer_customers WHERE buyer = ?1) \
         SELECT 'A', a.minute, a.currency, SUM(a.amount_minor), SUM(a.n_attempts) \
         FROM buyer_attempts a WHERE CAST(?6 AS BIGINT) = 1 AND a.minute >= ?2 AND a.buyer IN \
         (SELECT ?1 UNION SELECT b.buyer FROM buyer_customers b JOIN link l \
         ON b.wallet = l.wallet AND b.customer_id = l.customer_id) GROUP BY a.minute, a.currency \
         UNION ALL SELECT 'L', 0, l.wallet || '/' || l.customer_id, CASE WHEN EXISTS (SELECT 1 FROM blocked_customers x \
         WHERE x.wallet = l.wallet AND x.customer_id = l.customer_id) THEN 1 ELSE 0 END, 0 FROM link l \
         UNION ALL SELECT 'H', h.n_payments, h.scope, h.total_minor, 0 FROM buyer_history h \
         WHERE CAST(?7 AS BIGINT) = 1 AND h.customer = COALESCE((SELECT wallet || '/' || customer_id \
         FROM link), ?1) AND h.currency = ?3 AND h.scope IN (?4, ?5)",
        params![
            buyer,
            minute_of(since_ms.unwrap_or(0)),
            currency,
            scope_m,
            scope_mcc,
            i64::from(since_ms.is_some()),
            i64::from(scopes.is_some())
        ],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    let mut out = BuyerRead {
        attempts: Vec::new(),
        customer: None,
        blocked: false,
        history: [AmountHistory::default(); 2],
    };
    for (kind, a, text, b, n) in rows {
        match kind.as_str() {
            "A" => out.attempts.push(MinuteAttempts {
                minute: a,
                currency: paycode_core::Currency::parse(&text).map_err(|e| {
                    StoreError::Corrupt(format!("buyer_attempts of {buyer}: currency: {e}"))
                })?,
                amount_minor: b,
                n_attempts: n,
            }),
            "L" => {
                out.customer = Some(text);
                out.blocked = b != 0;
            }
            _ => {
                let i = usize::from(text != scope_m);
                out.history[i] = AmountHistory {
                    n_payments: a,
                    total_minor: b,
                };
            }
        }
    }
    Ok(out)
}

/// Adds one paid payment to the customer's history at both scopes in one statement, halving
/// as [`AmountHistory::with_payment`] says.
pub fn record_paid_at(
    c: &Connection,
    customer: &str,
    scopes: [&str; 2],
    currency: &str,
    amount_minor: i64,
    now_ms: i64,
) -> StoreResult<()> {
    let rows: Vec<(String, i64, i64)> = c.query_all_cached(
        "INSERT INTO buyer_history (customer, scope, currency, n_payments, total_minor, updated_ms) \
         VALUES (?1, ?2, ?4, 1, ?5, ?6), (?1, ?3, ?4, 1, ?5, ?6) \
         ON CONFLICT (customer, scope, currency) DO UPDATE SET \
         n_payments = buyer_history.n_payments + 1, \
         total_minor = buyer_history.total_minor + excluded.total_minor, \
         updated_ms = excluded.updated_ms RETURNING scope, n_payments, total_minor",
        params![customer, scopes[0], scopes[1], currency, amount_minor, now_ms],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    for (scope, n, total) in rows {
        if n >= AmountHistory::HALVE_AT {
            c.prepare_cached(
                "UPDATE buyer_history SET n_payments = ?4, total_minor = ?5 \
                 WHERE customer = ?1 AND scope = ?2 AND currency = ?3",
            )?
            .execute(params![customer, scope, currency, n / 2, total / 2])?;
        }
    }
    Ok(())
}

/// Links a buyer key to the wallet's customer (a wallet answer named it).
pub fn link_buyer(
    c: &Connection,
    buyer: &str,
    wallet: &str,
    customer_id: &str,
    now_ms: i64,
) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO buyer_customers (buyer, wallet, customer_id, updated_ms) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (buyer) DO UPDATE SET wallet = excluded.wallet, \
         customer_id = excluded.customer_id, updated_ms = excluded.updated_ms",
    )?
    .execute(params![buyer, wallet, customer_id, now_ms])?;
    Ok(())
}

/// A blocked customer as listed by the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedCustomer {
    pub wallet: String,
    pub customer_id: String,
    pub reason: String,
    pub source: String,
    pub created_ms: i64,
}

/// Blocks a customer; blocking one already blocked keeps the first reason and source.
pub fn block_customer(c: &Connection, b: &BlockedCustomer) -> StoreResult<bool> {
    Ok(c.prepare_cached(
        "INSERT INTO blocked_customers (wallet, customer_id, reason, source, created_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        b.wallet,
        b.customer_id,
        b.reason,
        b.source,
        b.created_ms
    ])? == 1)
}

/// Lifts a block only if `source` set it (a wallet clears its own reports, not an operator's).
pub fn unblock_customer_from(
    c: &Connection,
    wallet: &str,
    customer_id: &str,
    source: &str,
) -> StoreResult<bool> {
    Ok(c.prepare_cached(
        "DELETE FROM blocked_customers WHERE wallet = ?1 AND customer_id = ?2 AND source = ?3",
    )?
    .execute(params![wallet, customer_id, source])?
        == 1)
}

pub fn unblock_customer(c: &Connection, wallet: &str, customer_id: &str) -> StoreResult<bool> {
    Ok(
        c.prepare_cached("DELETE FROM blocked_customers WHERE wallet = ?1 AND customer_id = ?2")?
            .execute(params![wallet, customer_id])?
            == 1,
    )
}

pub fn blocked_customers(c: &Connection) -> StoreResult<Vec<BlockedCustomer>> {
    Ok(c.query_all_cached(
        "SELECT wallet, customer_id, reason, source, created_ms FROM blocked_customers \
         ORDER BY wallet, customer_id",
        (),
        |r| {
            Ok(BlockedCustomer {
                wallet: r.get(0)?,
                customer_id: r.get(1)?,
                reason: r.get(2)?,
                source: r.get(3)?,
                created_ms: r.get(4)?,
            })
        },
    )?)
}

/// A stored decision in which a rule fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRow {
    pub payment_id: String,
    pub created_ms: i64,
    pub rules_version: i64,
    pub verdict: String,
    /// JSON lists of `{ruleId, action, reason}`.
    pub hits: String,
    pub shadow: String,
}

pub fn insert_decision(c: &Connection, d: &DecisionRow) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO risk_decisions (payment_id, created_ms, rules_version, verdict, hits, shadow) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        d.payment_id,
        d.created_ms,
        d.rules_version,
        d.verdict,
        d.hits,
        d.shadow
    ])?;
    Ok(())
}

pub fn decision(c: &Connection, payment_id: &str) -> StoreResult<Option<DecisionRow>> {
    Ok(c.prepare_cached(
        "SELECT payment_id, created_ms, rules_version, verdict, hits, shadow \
             FROM risk_decisions WHERE payment_id = ?1",
    )?
    .query_row(params![payment_id], decision_row)
    .optional()?)
}

fn decision_row(r: &paycode_db::sql::Row<'_>) -> paycode_db::sql::Result<DecisionRow> {
    Ok(DecisionRow {
        payment_id: r.get(0)?,
        created_ms: r.get(1)?,
        rules_version: r.get(2)?,
        verdict: r.get(3)?,
        hits: r.get(4)?,
        shadow: r.get(5)?,
    })
}

/// The latest decisions in which a rule fired, newest first (index range, bounded).
pub fn recent_decisions(c: &Connection, limit: usize) -> StoreResult<Vec<DecisionRow>> {
    Ok(c.query_all_cached(
        "SELECT payment_id, created_ms, rules_version, verdict, hits, shadow \
         FROM risk_decisions ORDER BY created_ms DESC, payment_id DESC LIMIT ?1",
        params![limit as i64],
        decision_row,
    )?)
}

/// Whether buyer data older than its keep time exists.
pub fn any_stale_buyer_data(c: &Connection, now_ms: i64) -> StoreResult<bool> {
    let (attempts, links, history) = keep_limits(now_ms);
    Ok(c.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM buyer_attempts WHERE minute < ?1) \
             OR EXISTS (SELECT 1 FROM buyer_customers WHERE updated_ms < ?2) \
             OR EXISTS (SELECT 1 FROM buyer_history WHERE updated_ms < ?3)",
    )?
    .query_row(params![attempts, links, history], |r| r.get(0))?)
}

/// (first kept minute of attempts, first kept ms of links, of histories).
fn keep_limits(now_ms: i64) -> (i64, i64, i64) {
    const DAY_MS: i64 = 86_400_000;
    (
        minute_of(now_ms - 2 * DAY_MS),
        now_ms - 30 * DAY_MS,
        now_ms - 180 * DAY_MS,
    )
}

/// Drops up to `limit` rows of each buyer table past its keep time (bounded work per call).
pub fn prune_buyer_data(c: &Connection, now_ms: i64, limit: usize) -> StoreResult<usize> {
    let (attempts, links, history) = keep_limits(now_ms);
    let limit = limit as i64;
    let mut n = c
        .prepare_cached(
            "DELETE FROM buyer_attempts WHERE (buyer, minute, currency) IN \
             (SELECT buyer, minute, currency FROM buyer_attempts WHERE minute < ?1 LIMIT ?2)",
        )?
        .execute(params![attempts, limit])?;
    n += c
        .prepare_cached(
            "DELETE FROM buyer_customers WHERE buyer IN \
             (SELECT buyer FROM buyer_customers WHERE updated_ms < ?1 LIMIT ?2)",
        )?
        .execute(params![links, limit])?;
    n += c
        .prepare_cached(
            "DELETE FROM buyer_history WHERE (customer, scope, currency) IN \
             (SELECT customer, scope, currency FROM buyer_history WHERE updated_ms < ?1 LIMIT ?2)",
        )?
        .execute(params![history, limit])?;
    Ok(n)
}

/// The UTC day the counters and seen codes are keyed by.
fn day_of(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}

/// The merchant's attempts today in `currency`: (amount, count across currencies).
pub fn merchant_today(
    c: &Connection,
    merchant: &str,
    currency: &str,
    now_ms: i64,
) -> StoreResult<(i64, i64)> {
    Ok(c.prepare_cached(
        "SELECT COALESCE(SUM(CASE WHEN currency = ?3 THEN amount_minor END), 0), \
         COALESCE(SUM(n_attempts), 0) FROM merchant_daily WHERE merchant = ?1 AND day = ?2",
    )?
    .query_row(params![merchant, day_of(now_ms), currency], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?)
}

pub fn count_attempt(
    c: &Connection,
    merchant: &str,
    currency: &str,
    amount_minor: i64,
    now_ms: i64,
) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO merchant_daily (merchant, day, currency, amount_minor, n_attempts) VALUES (?1, ?2, ?3, ?4, 1) \
         ON CONFLICT (merchant, day, currency) DO UPDATE SET \
         amount_minor = merchant_daily.amount_minor + excluded.amount_minor, \
         n_attempts = merchant_daily.n_attempts + 1",
    )?
    .execute(params![merchant, day_of(now_ms), currency, amount_minor])?;
    Ok(())
}

/// Whether the code was sent on today or yesterday (no code lives longer than minutes).
pub fn code_seen(c: &Connection, key: &[u8], now_ms: i64) -> StoreResult<bool> {
    let day = day_of(now_ms);
    Ok(c.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM seen_codes WHERE day IN (?1, ?2) AND code_hash = ?3)",
    )?
    .query_row(params![day - 1, day, key], |r| r.get(0))?)
}

pub fn remember_code(c: &Connection, key: &[u8], payment_id: &str, now_ms: i64) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO seen_codes (day, code_hash, payment_id) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
    )?
    .execute(params![day_of(now_ms), key, payment_id])?;
    Ok(())
}

/// Whether there are seen codes from before yesterday.
pub fn any_stale_seen_codes(c: &Connection, now_ms: i64) -> StoreResult<bool> {
    Ok(
        c.prepare_cached("SELECT EXISTS (SELECT 1 FROM seen_codes WHERE day < ?1)")?
            .query_row([day_of(now_ms) - 1], |r| r.get(0))?,
    )
}

/// Drops up to `limit` seen codes from before yesterday (bounded work per call).
pub fn prune_seen_codes(c: &Connection, now_ms: i64, limit: usize) -> StoreResult<usize> {
    Ok(c.prepare_cached(
        "DELETE FROM seen_codes WHERE (day, code_hash) IN \
         (SELECT day, code_hash FROM seen_codes WHERE day < ?1 LIMIT ?2)",
    )?
    .execute(params![day_of(now_ms) - 1, limit as i64])?)
}

/// What a dry run of candidate rules needs of one stored payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRow {
    pub payment_id: String,
    pub created_ms: i64,
    pub client_id: String,
    pub reference_merchant_id: String,
    pub reference_store_id: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub wallet: String,
    pub buyer: Option<String>,
    pub psp_customer_id: Option<String>,
    /// The wallet paid it (even if it was cancelled and reversed later).
    pub paid: bool,
    /// A refund of it succeeded.
    pub refunded: bool,
}

/// Payments created in `[since_ms, until_ms)` after the keyset cursor `after` (created, id),
/// oldest first, at most `limit` (an index range on `payments_created`).
pub fn replay_rows(
    c: &Connection,
    since_ms: i64,
    until_ms: i64,
    after: Option<(i64, &str)>,
    limit: usize,
) -> StoreResult<Vec<ReplayRow>> {
    let (after_ms, after_id) = after.unwrap_or((i64::MIN, ""));
    Ok(c.query_all_cached(
        "SELECT p.payment_id, p.created_ms, p.client_id, p.reference_merchant_id, \
         p.reference_store_id, p.amount_minor, p.currency, p.wallet, p.buyer, p.psp_customer_id, \
         p.paid_ms IS NOT NULL, EXISTS (SELECT 1 FROM refunds r WHERE r.payment_id = p.payment_id \
         AND r.status = 'SUCCESS') FROM payments p \
         WHERE p.created_ms >= ?1 AND p.created_ms < ?2 \
         AND (p.created_ms > ?3 OR (p.created_ms = ?3 AND p.payment_id > ?4)) \
         ORDER BY p.created_ms, p.payment_id LIMIT ?5",
        params![since_ms, until_ms, after_ms, after_id, limit as i64],
        |r| {
            Ok(ReplayRow {
                payment_id: r.get(0)?,
                created_ms: r.get(1)?,
                client_id: r.get(2)?,
                reference_merchant_id: r.get(3)?,
                reference_store_id: r.get(4)?,
                amount_minor: r.get(5)?,
                currency: r.get(6)?,
                wallet: r.get(7)?,
                buyer: r.get(8)?,
                psp_customer_id: r.get(9)?,
                paid: r.get(10)?,
                refunded: r.get(11)?,
            })
        },
    )?)
}
