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
use paycode_db::sql::types::Type;
use paycode_db::sql::{self, Row};

pub mod agents;
pub mod audit;
pub mod dashboard;
pub mod guesses;
mod journal;
mod outbox;
mod payments;
mod quotes;
pub mod registry;
pub mod risk;
mod schema;
pub mod seed;
pub mod settlement;

pub use journal::*;
pub use outbox::*;
pub use payments::*;
pub use quotes::*;
pub use schema::SCHEMA;

/// Whether the database answers a trivial query (readiness).
pub fn ping(c: &paycode_db::sql::Connection) -> StoreResult<()> {
    c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
    Ok(())
}

/// The first release's tables: its own, its risk counters and the guessing counters it
/// shares with the wallet.
fn schema_v1() -> String {
    format!(
        "{SCHEMA}{}{}",
        risk::RISK_SCHEMA,
        paycode_db::guess_counters::SCHEMA
    )
}

fn schema_v2() -> String {
    format!(
        "{}{}{}",
        risk::BUYER_RISK_SCHEMA,
        agents::AGENT_SCHEMA,
        agents::OPERATOR_LOG_SCHEMA
    )
}

/// Every table of the current version, in order (for in-memory test stores).
pub fn full_schema() -> String {
    format!(
        "{}{}{}",
        schema_v1(),
        schema_v2(),
        dashboard::DASHBOARD_SCHEMA
    )
}

/// The acquirer's schema versions. Version 1 is the schema of the first releases, written with
/// `IF NOT EXISTS` throughout, so that a store they created opens and is recorded at version 1
/// unchanged; later versions append here.
pub fn migrations() -> Vec<paycode_db::Migration> {
    vec![
        paycode_db::Migration::new(1, "the first release's tables", schema_v1()),
        paycode_db::Migration::new(
            2,
            "buyer and transaction risk (customers, versions, decisions); agent tokens; operator log",
            schema_v2(),
        ),
        paycode_db::Migration::new(
            3,
            "dashboard users and sessions; indexes of the payment search",
            dashboard::DASHBOARD_SCHEMA.to_string(),
        ),
    ]
}

pub use paycode_db::StoreError;

pub type StoreResult<T> = Result<T, StoreError>;

/// Parameters per statement at most: under SQLite's 32,766 and PostgreSQL's 65,535.
const PARAMS_PER_STATEMENT_MAX: usize = 30_000;

/// `(?1, ?2, ?3), (?4, ?5, ?6), …`: `rows` rows of `columns` placeholders.
fn value_rows(rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 6);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for k in 1..=columns {
            if k > 1 {
                out.push_str(", ");
            }
            out.push('?');
            out.push_str(&(r * columns + k).to_string());
        }
        out.push(')');
    }
    out
}

/// Inserts `values` (rows of `columns` values, flattened) with `head` (`INSERT INTO t (…)`),
/// as many rows per statement as the parameter limit allows; `tail` follows each `VALUES`
/// list. Nothing to insert is no statement.
fn insert_many(
    c: &sql::Connection,
    head: &str,
    tail: &str,
    columns: usize,
    values: &[sql::types::ToSqlOutput<'_>],
) -> StoreResult<()> {
    assert_eq!(values.len() % columns, 0, "whole rows only");
    let rows_per_statement = PARAMS_PER_STATEMENT_MAX / columns;
    for chunk in values.chunks(rows_per_statement * columns) {
        let n_rows = chunk.len() / columns;
        let sql = format!("{head} VALUES {}{tail}", value_rows(n_rows, columns));
        let refs: Vec<&dyn sql::types::ToSql> =
            chunk.iter().map(|v| v as &dyn sql::types::ToSql).collect();
        // Each row count is one text, prepared once per connection.
        c.prepare_cached(&sql)?.execute(refs.as_slice())?;
    }
    Ok(())
}

pub(crate) fn corrupt_column(column: usize, why: String) -> sql::Error {
    sql::Error::FromSqlConversionFailure(column, Type::Text, why.into())
}

/// A result code the core does not know fails the read (and becomes [`StoreError::Corrupt`]).
pub(crate) fn result_code_at(
    r: &Row<'_>,
    column: usize,
    row: &dyn Fn() -> String,
) -> sql::Result<ResultCode> {
    let text: String = r.get(column)?;
    ResultCode::parse(&text)
        .ok_or_else(|| corrupt_column(column, format!("{}: result code {text:?}", row())))
}

/// A time the acquirer writes is unix milliseconds within chrono's range; anything else is a
/// corrupt row, not 1970.
pub(crate) fn ms_at(r: &Row<'_>, column: usize, row: &dyn Fn() -> String) -> sql::Result<i64> {
    let ms: i64 = r.get(column)?;
    checked_ms(ms, column, row)
}

pub(crate) fn opt_ms_at(
    r: &Row<'_>,
    column: usize,
    row: &dyn Fn() -> String,
) -> sql::Result<Option<i64>> {
    let ms: Option<i64> = r.get(column)?;
    ms.map(|ms| checked_ms(ms, column, row)).transpose()
}

fn checked_ms(ms: i64, column: usize, row: &dyn Fn() -> String) -> sql::Result<i64> {
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
    use super::PaymentRow;
    use paycode_core::ResultCode;
    use paycode_core::payment::PaymentState;
    use paycode_db::sql::Connection;

    /// An in-memory store with the acquirer's schema.
    pub(crate) fn conn() -> Connection<'static> {
        let c = Connection::open_in_memory().expect("an in-memory database opens");
        c.execute_batch(&super::full_schema())
            .expect("the schema applies");
        c
    }

    /// A processing payment of 5.00 SGD, as a new row would be written.
    pub(crate) fn payment(id: &str) -> PaymentRow {
        PaymentRow {
            payment_id: id.to_string(),
            client_id: "client-1".to_string(),
            payment_request_id: format!("req-{id}"),
            request_hash: "hash".to_string(),
            reference_merchant_id: "M1".to_string(),
            reference_store_id: None,
            merchant_name: "Shop".to_string(),
            store_name: None,
            terminal_id: None,
            amount_minor: 500,
            currency: "SGD".to_string(),
            wallet: "wallet-a".to_string(),
            psp_name: "WalletA".to_string(),
            code_masked: "********1234".to_string(),
            pay_to_minor: 500,
            pay_to_currency: "SGD".to_string(),
            payment_quote: None,
            settle_minor: 500,
            settle_currency: "SGD".to_string(),
            settlement_quote: None,
            fee_minor: 5,
            state: PaymentState::Processing,
            result_code: ResultCode::PAYMENT_IN_PROCESS,
            result_message: String::new(),
            wallet_payment_id: None,
            psp_customer_id: None,
            notify_url: None,
            created_ms: 1_780_000_000_000,
            expires_ms: 1_780_000_060_000,
            paid_ms: None,
            cancelled_ms: None,
            cancel_requested_ms: None,
            updated_ms: 1_780_000_000_000,
            next_check_ms: Some(1_780_000_005_000),
            n_checks: 0,
            buyer: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// Every `.rs` file under `dir`, except those under `skip`.
    fn sources(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("the source folder reads") {
            let path = entry.expect("a folder entry reads").path();
            if path == skip {
                continue;
            }
            if path.is_dir() {
                sources(&path, skip, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// What a line of code outside `store/` may not contain: SQL or a direct database call.
    const BANNED: [&str; 17] = [
        "SELECT ",
        "INSERT ",
        "UPDATE ",
        "DELETE ",
        "CREATE ",
        "exec_cached",
        "query_row",
        "query_map",
        "query_all",
        ".prepare(",
        "prepare_cached",
        ".execute(",
        "execute_batch",
        "params!",
        "unchecked_transaction",
        "guess_counters",
        "sql::Error",
    ];

    /// The first banned word in a line's code (its comment aside).
    fn banned_in(line: &str) -> Option<&'static str> {
        let code = line.split("//").next().unwrap_or_default();
        BANNED.into_iter().find(|b| code.contains(b))
    }

    /// The storage layer's invariant, checked from the crate's own files: no module outside
    /// `store/` writes SQL or calls the database except through a `&Connection` it passes on.
    #[test]
    fn every_sql_statement_lives_in_the_store() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &src.join("store"), &mut files);
        for path in &files {
            let text = std::fs::read_to_string(path).expect("a source file reads");
            for (n, line) in text.lines().enumerate() {
                if let Some(banned) = banned_in(line) {
                    panic!(
                        "{}:{}: `{banned}` outside the storage layer: {line}",
                        path.display(),
                        n + 1
                    );
                }
            }
        }
        assert!(files.len() >= 12, "only {} files checked", files.len());
    }

    #[test]
    fn the_guard_flags_statements_and_calls_but_not_comments() {
        for (line, want) in [
            (r#"c.execute("DELETE FROM routes", [])?;"#, Some("DELETE ")),
            (r#"let n = c.prepare_cached(sql)?;"#, Some("prepare_cached")),
            (
                r#"paycode_db::guess_counters::prune(c, 0, 1)?;"#,
                Some("guess_counters"),
            ),
            ("store::update_payment(c, &p)?; // UPDATE payments", None),
            ("let prepared = self.prepare_payment(&input)?;", None),
        ] {
            assert_eq!(banned_in(line), want, "{line}");
        }
    }
}
