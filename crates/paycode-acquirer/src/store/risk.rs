//! The risk tables: the operators' rule list (one row), attempts per merchant and UTC day, and
//! the hashes of codes already sent to a wallet (the replay rule).

use super::StoreResult;
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

pub fn stored_rules(c: &Connection) -> StoreResult<Option<String>> {
    Ok(
        c.query_row("SELECT rules_json FROM risk_rules WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?,
    )
}

pub fn store_rules(c: &Connection, json: &str, now_ms: i64) -> StoreResult<()> {
    c.execute(
        "INSERT INTO risk_rules (id, rules_json, updated_ms) VALUES (1, ?1, ?2) \
         ON CONFLICT (id) DO UPDATE SET rules_json = excluded.rules_json, updated_ms = excluded.updated_ms",
        params![json, now_ms],
    )?;
    Ok(())
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
