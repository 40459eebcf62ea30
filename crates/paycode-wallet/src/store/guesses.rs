//! The `guess_counters` table, whose statements `paycode_db::guess_counters` shares with the
//! acquirer: failed code look-ups per source and per slot.

use super::StoreError;
use paycode_core::guess::{Counter, SourceLimit};
use paycode_db::guess_counters;
use paycode_db::sql::Connection;

pub(crate) fn load(conn: &Connection, source: &str) -> Result<Option<Counter>, StoreError> {
    Ok(guess_counters::load(conn, source)?)
}

pub(crate) fn count_failure(
    conn: &Connection,
    source: &str,
    limit: SourceLimit,
    now_ms: i64,
) -> Result<(), StoreError> {
    Ok(guess_counters::count_failure(conn, source, limit, now_ms)?)
}

pub(crate) fn any_older_than(conn: &Connection, before_ms: i64) -> Result<bool, StoreError> {
    Ok(guess_counters::any_older_than(conn, before_ms)?)
}

pub(crate) fn prune(conn: &Connection, before_ms: i64, limit: usize) -> Result<usize, StoreError> {
    Ok(guess_counters::prune(conn, before_ms, limit)?)
}
