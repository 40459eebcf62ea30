//! What a failed statement means to a storage layer. Both services tell the same four cases
//! apart (and name them in their own `StoreError`), so the reading of SQLite's codes and
//! messages lives here once.

use crate::sql;
use rusqlite::ffi;

/// A failed statement, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A query that must return a row returned none.
    NoRow,
    /// An insert collided on a unique or primary key, named as SQLite names it
    /// (`table.column`, or `table.a, table.b`).
    Unique(String),
    /// A stored value of the wrong type, or one a row reader refused (column and why).
    Corrupt(String),
    /// Anything else: the database, not the data.
    Other,
}

pub fn failure_of(e: &sql::Error) -> Failure {
    match e {
        sql::Error::QueryReturnedNoRows => Failure::NoRow,
        sql::Error::Sqlite(rusqlite::Error::QueryReturnedNoRows) => Failure::NoRow,
        sql::Error::Sqlite(rusqlite::Error::SqliteFailure(f, Some(msg)))
            if f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            // "UNIQUE constraint failed: devices.slot"
            Failure::Unique(msg.rsplit(": ").next().unwrap_or(msg).to_string())
        }
        sql::Error::Postgres(pg) => match pg.as_db_error() {
            Some(db) if *db.code() == postgres::error::SqlState::UNIQUE_VIOLATION => {
                Failure::Unique(pg_unique_key(db))
            }
            _ => Failure::Other,
        },
        sql::Error::FromSqlConversionFailure(column, _, why) => {
            Failure::Corrupt(format!("column {column}: {why}"))
        }
        sql::Error::InvalidColumnType(column, name, ty) => {
            Failure::Corrupt(format!("column {column} ({name}) holds a {ty}"))
        }
        _ => Failure::Other,
    }
}

/// A PostgreSQL unique violation's key named as SQLite names it: `table.a, table.b`, read
/// from the detail `Key (a, b)=(…) already exists.`
fn pg_unique_key(db: &postgres::error::DbError) -> String {
    let table = db.table().unwrap_or("?");
    let columns = db
        .detail()
        .and_then(|d| d.strip_prefix("Key ("))
        .and_then(|d| d.split(")=").next());
    match columns {
        Some(cols) => cols
            .split(", ")
            .map(|c| format!("{table}.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
        None => db.constraint().unwrap_or("?").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::Connection;

    #[test]
    fn failures_are_told_apart() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT UNIQUE, n INTEGER)")
            .unwrap();
        c.execute("INSERT INTO t (a, b, n) VALUES (1, 'x', 'seven')", [])
            .unwrap();
        let check = |e: sql::Error, want: Failure| assert_eq!(failure_of(&e), want);
        check(
            c.execute("INSERT INTO t (a, b) VALUES (1, 'y')", [])
                .unwrap_err(),
            Failure::Unique("t.a".to_string()),
        );
        check(
            c.execute("INSERT INTO t (a, b) VALUES (2, 'x')", [])
                .unwrap_err(),
            Failure::Unique("t.b".to_string()),
        );
        check(
            c.query_row("SELECT a FROM t WHERE a = 9", [], |r| r.get::<_, i64>(0))
                .unwrap_err(),
            Failure::NoRow,
        );
        match failure_of(
            &c.query_row("SELECT n FROM t", [], |r| r.get::<_, i64>(0))
                .unwrap_err(),
        ) {
            Failure::Corrupt(why) => assert!(why.contains("column 0"), "{why}"),
            other => panic!("{other:?}"),
        }
        check(
            c.execute("SELECT * FROM nowhere", []).unwrap_err(),
            Failure::Other,
        );
    }
}
