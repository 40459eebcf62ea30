//! The `guess_counters` table, whose statements `paycode_db::guess_counters` shares with the
//! wallet: failed code look-ups per source.

use super::StoreResult;
use paycode_core::guess::{Counter, SourceLimit};
use paycode_db::guess_counters;
use paycode_db::sql::Connection;

pub fn load(c: &Connection, source: &str) -> StoreResult<Option<Counter>> {
    Ok(guess_counters::load(c, source)?)
}

pub fn count_failure(
    c: &Connection,
    source: &str,
    limit: SourceLimit,
    now_ms: i64,
) -> StoreResult<()> {
    Ok(guess_counters::count_failure(c, source, limit, now_ms)?)
}

pub fn any_older_than(c: &Connection, before_ms: i64) -> StoreResult<bool> {
    Ok(guess_counters::any_older_than(c, before_ms)?)
}

pub fn prune(c: &Connection, before_ms: i64, limit: usize) -> StoreResult<usize> {
    Ok(guess_counters::prune(c, before_ms, limit)?)
}
