//! The stored form of the guessing counters of [`paycode_core::guess`]: one row per source in a
//! table both services create from [`SCHEMA`]. Kept here so the acquirer and the wallet share one
//! implementation; the decisions stay in the core.

use crate::params;
use crate::sql::{self, Connection, OptionalExtension};
use paycode_core::guess::{Counter, SourceLimit};

pub const SCHEMA: &str = r#"
-- Failed code look-ups per source, as fixed-window counters (paycode_core::guess), so that the
-- guessing limits survive a restart.
CREATE TABLE IF NOT EXISTS guess_counters (
    source TEXT PRIMARY KEY,
    window_start_ms INTEGER NOT NULL,
    failures INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS guess_counters_by_window ON guess_counters (window_start_ms);
"#;

/// The counter of `source`, if one is stored. A stored count that is not a `u32` is reported as
/// an error rather than read as something else.
pub fn load(c: &Connection<'_>, source: &str) -> sql::Result<Option<Counter>> {
    load_with(c, source, "")
}

/// [`load`], with `lock` appended to the statement (`FOR UPDATE` or nothing).
fn load_with(c: &Connection<'_>, source: &str, lock: &str) -> sql::Result<Option<Counter>> {
    let row: Option<(i64, i64)> = c
        .query_row(
            &format!(
                "SELECT window_start_ms, failures FROM guess_counters WHERE source = ?1{lock}"
            ),
            params![source],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    row.map(|(window_start_ms, failures)| {
        let failures = u32::try_from(failures).map_err(|e| {
            sql::Error::FromSqlConversionFailure(1, sql::types::Type::Integer, e.into())
        })?;
        Ok(Counter {
            window_start_ms,
            failures,
        })
    })
    .transpose()
}

/// Counts one failed look-up of `source` at `now_ms`.
pub fn count_failure(
    c: &Connection<'_>,
    source: &str,
    limit: SourceLimit,
    now_ms: i64,
) -> sql::Result<()> {
    // Units counting for one source at once must all count. The row is made to exist and
    // is locked (PostgreSQL) before it is read, so a second unit waits for the first and
    // counts on top of its count instead of writing the same next count. A new row starts an
    // empty window now, which `after_failure` turns into one failure.
    c.execute(
        "INSERT INTO guess_counters (source, window_start_ms, failures) VALUES (?1, ?2, 0) \
         ON CONFLICT (source) DO NOTHING",
        params![source, now_ms],
    )?;
    let next = limit.after_failure(load_with(c, source, c.for_update())?, now_ms);
    c.execute(
        "UPDATE guess_counters SET window_start_ms = ?2, failures = ?3 WHERE source = ?1",
        params![source, next.window_start_ms, i64::from(next.failures)],
    )?;
    Ok(())
}

/// Whether any counter's window started before `before_ms` (so a prune has work).
pub fn any_older_than(c: &Connection<'_>, before_ms: i64) -> sql::Result<bool> {
    c.query_row(
        "SELECT EXISTS (SELECT 1 FROM guess_counters WHERE window_start_ms < ?1)",
        params![before_ms],
        |r| r.get(0),
    )
}

/// Deletes at most `limit` counters whose window started before `before_ms`.
pub fn prune(c: &Connection<'_>, before_ms: i64, limit: usize) -> sql::Result<usize> {
    c.execute(
        "DELETE FROM guess_counters WHERE source IN (SELECT source FROM guess_counters \
         WHERE window_start_ms < ?1 ORDER BY window_start_ms LIMIT ?2)",
        params![before_ms, i64::try_from(limit).unwrap_or(i64::MAX)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_round_trip_and_prune() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(SCHEMA).unwrap();
        let l = SourceLimit {
            failures_max: 2,
            window_s: 10,
        };
        assert_eq!(load(&c, "a").unwrap(), None);
        count_failure(&c, "a", l, 1_000).unwrap();
        count_failure(&c, "a", l, 2_000).unwrap();
        let got = load(&c, "a").unwrap().unwrap();
        assert_eq!(
            got,
            Counter {
                window_start_ms: 1_000,
                failures: 2
            }
        );
        assert_eq!(l.refusal(Some(got), 5_000), Some(6_000));
        count_failure(&c, "b", l, 20_000).unwrap();
        assert!(any_older_than(&c, 11_000).unwrap());
        assert_eq!(prune(&c, 11_000, 10).unwrap(), 1);
        assert!(!any_older_than(&c, 11_000).unwrap());
        assert_eq!(load(&c, "a").unwrap(), None);
        assert!(load(&c, "b").unwrap().is_some());
    }
}
