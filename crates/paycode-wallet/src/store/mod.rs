//! The wallet's storage layer: the schema, typed rows, and one function per SQL statement. It
//! holds every SQL statement of the wallet and nothing else: no decision, no clock, no hashing.
//!
//! Every function takes the caller's `&Connection`, so the use cases (`payments`, `challenges`,
//! `devices`, `users`, `notify`, `audit`) compose several of them inside **one** group-commit
//! write job and keep each read-then-write decision atomic, exactly as one closure did before.
//!
//! Stored values are parsed into types at this edge ([`PayState`](crate::payment_state::PayState),
//! [`LedgerKind`]); a value the wallet never writes is [`StoreError::Corrupt`], never a default.

pub(crate) mod audit;
#[cfg(test)]
mod conformance;
pub(crate) mod devices;
pub(crate) mod guesses;
pub(crate) mod outbox;
pub(crate) mod payments;
mod schema;
pub(crate) mod users;

pub use schema::SCHEMA;

/// Every table the wallet opens: its own and the guessing counters it shares with the acquirer.
pub(crate) fn full_schema() -> String {
    format!("{SCHEMA}{}", paycode_db::guess_counters::SCHEMA)
}

/// The wallet's schema versions. Version 1 is the schema of the first releases, written with
/// `IF NOT EXISTS` throughout, so that a store they created opens and is recorded at version 1
/// unchanged; later versions append here.
pub(crate) fn migrations() -> Vec<paycode_db::Migration> {
    vec![paycode_db::Migration::new(
        1,
        "the first release's tables",
        full_schema(),
    )]
}

pub use paycode_db::StoreError;

/// Ledger row kinds. The sum of a user's rows is their balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LedgerKind {
    Opening,
    Topup,
    Payment,
    Reversal,
    Refund,
}

impl LedgerKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Opening => "OPENING",
            LedgerKind::Topup => "TOPUP",
            LedgerKind::Payment => "PAYMENT",
            LedgerKind::Reversal => "REVERSAL",
            LedgerKind::Refund => "REFUND",
        }
    }

    fn parse(s: &str) -> Result<LedgerKind, StoreError> {
        match s {
            "OPENING" => Ok(LedgerKind::Opening),
            "TOPUP" => Ok(LedgerKind::Topup),
            "PAYMENT" => Ok(LedgerKind::Payment),
            "REVERSAL" => Ok(LedgerKind::Reversal),
            "REFUND" => Ok(LedgerKind::Refund),
            other => Err(StoreError::Corrupt(format!("ledger kind {other:?}"))),
        }
    }
}

/// Milliseconds in a UTC day: `user_daily` rows are keyed by `at_ms / DAY_MS`.
pub(crate) const DAY_MS: i64 = 86_400_000;

#[cfg(test)]
pub(crate) mod test_support {
    use paycode_db::sql::Connection;

    /// An in-memory store with the wallet's schema.
    pub(crate) fn conn() -> Connection<'static> {
        let c = Connection::open_in_memory().expect("an in-memory database opens");
        c.execute_batch(&super::full_schema())
            .expect("the schema applies");
        c
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The storage layer's invariant, checked from the crate's own files: no module outside
    /// `store/` writes SQL or calls the database except through a `&Connection` it passes on.
    #[test]
    fn every_sql_statement_lives_in_the_store() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut checked = 0;
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap();
                for banned in [
                    "SELECT ",
                    "INSERT ",
                    "UPDATE ",
                    "DELETE ",
                    "exec_cached",
                    "query_row",
                    "query_map",
                    "prepare",
                    "execute",
                    "params!",
                    "guess_counters",
                    "sql::Error",
                ] {
                    assert!(
                        !code.contains(banned),
                        "{}:{}: `{banned}` outside the storage layer: {line}",
                        path.display(),
                        n + 1
                    );
                }
            }
            checked += 1;
        }
        assert!(checked >= 15, "only {checked} files checked");
    }
}
