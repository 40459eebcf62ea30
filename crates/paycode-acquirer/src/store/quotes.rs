//! The `quotes` given out and the one-row `fx_rates` table.

use super::StoreResult;
use paycode_db::sql::{Connection, OptionalExtension, params};

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

/// When the stored rate file was last replaced (`None`: never), for other processes to notice.
pub fn rate_file_updated_ms(c: &Connection) -> StoreResult<Option<i64>> {
    Ok(
        c.query_row("SELECT updated_ms FROM fx_rates WHERE id = 1", [], |r| {
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
