//! The acquirer's storage layer: the schema, typed rows, and one function per SQL statement. It
//! holds every SQL statement of the acquirer and nothing else: no decision, no clock, no wire.
//!
//! Functions here take a `&Connection` and are called inside `Db::write` / `Db::read` closures,
//! so the service composes several of them into one atomic group-commit job and keeps each
//! read-then-write decision inside it. The SQL is plain and portable (no SQLite-only syntax
//! beyond `INSERT … ON CONFLICT`, which PostgreSQL shares); times are integer unix
//! milliseconds, amounts integer minor units.
//!
//! Stored values are parsed into the core's types at this edge
//! ([`PaymentState`](paycode_core::payment::PaymentState), [`ResultCode`]); a value the acquirer
//! never writes is [`StoreError::Corrupt`] naming the row, never a default.

use paycode_core::ResultCode;
use paycode_db::DbError;
use paycode_db::rusqlite::types::Type;
use paycode_db::rusqlite::{self, Row};

pub mod audit;
pub mod guesses;
mod journal;
mod outbox;
mod payments;
mod quotes;
pub mod registry;
pub mod risk;
mod schema;
pub mod settlement;

pub use journal::*;
pub use outbox::*;
pub use payments::*;
pub use quotes::*;
pub use schema::SCHEMA;

/// Whether the database answers a trivial query (readiness).
pub fn ping(c: &paycode_db::rusqlite::Connection) -> StoreResult<()> {
    c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
    Ok(())
}

/// Every table the acquirer opens: its own, its risk counters and the guessing counters it
/// shares with the wallet.
pub fn full_schema() -> String {
    format!(
        "{SCHEMA}{}{}",
        risk::RISK_SCHEMA,
        paycode_db::guess_counters::SCHEMA
    )
}

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

pub(crate) fn corrupt_column(column: usize, why: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, Type::Text, why.into())
}

/// A result code the core does not know fails the read (and becomes [`StoreError::Corrupt`]).
pub(crate) fn result_code_at(
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
pub(crate) fn ms_at(r: &Row<'_>, column: usize, row: &dyn Fn() -> String) -> rusqlite::Result<i64> {
    let ms: i64 = r.get(column)?;
    checked_ms(ms, column, row)
}

pub(crate) fn opt_ms_at(
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

#[cfg(test)]
pub(crate) mod test_support {
    use paycode_db::rusqlite::Connection;

    /// An in-memory store with the acquirer's schema.
    pub(crate) fn conn() -> Connection {
        let c = Connection::open_in_memory().expect("an in-memory database opens");
        c.execute_batch(&super::full_schema())
            .expect("the schema applies");
        c
    }
}
