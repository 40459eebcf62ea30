//! The engine contract, on SQLite always and on PostgreSQL when `PAYCODE_TEST_DATABASE_URL`
//! is set: units commit whole or not at all, concurrent units keep invariants the database
//! enforces, a unit that meets a serialization failure is re-run and applied once, and values
//! read back as they were written.

use paycode_db::sql::{Engine, OptionalExtension};
use paycode_db::{Db, DbConfig, DbError, Location, Migration, params};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug, thiserror::Error)]
enum E {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("refused: {0}")]
    Refused(String),
}

impl From<paycode_db::sql::Error> for E {
    fn from(e: paycode_db::sql::Error) -> E {
        E::Db(DbError::Sql(e))
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY,
    balance INTEGER NOT NULL CHECK (balance >= 0)
);
CREATE TABLE IF NOT EXISTS moves (
    move_id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    account TEXT NOT NULL,
    amount INTEGER NOT NULL,
    note BLOB
);
";

/// SQLite; and on PostgreSQL both the group-commit writer and one transaction per unit, which
/// stands for several processes sharing the database (their units run side by side and meet
/// only in the database's locks and keys).
fn engines() -> Vec<(tempfile::TempDir, Db)> {
    let mut out = Vec::new();
    for (pg, group_commit) in [(false, true), (true, true), (true, false)] {
        let dir = tempfile::tempdir().unwrap();
        let location = if pg {
            match paycode_db::test_pg_target("engines") {
                Some(t) => Location::Postgres(t),
                None => continue,
            }
        } else {
            Location::File(dir.path().join("t.db"))
        };
        let config = DbConfig {
            pg_group_commit: group_commit,
            ..DbConfig::default()
        };
        let db = Db::open_at(&location, &[Migration::new(1, "accounts", SCHEMA)], config).unwrap();
        db.write_blocking(|c| {
            c.execute(
                "INSERT INTO accounts (name, balance) VALUES ('a', 1000)",
                [],
            )?;
            Ok::<_, E>(())
        })
        .unwrap();
        out.push((dir, db));
    }
    out
}

/// Takes `amount` from account `a` once per request id. The balance row is locked first and
/// the request looked up after: a duplicate running beside the first copy then waits for it
/// and finds its move, instead of deciding from a balance the first copy already spent.
fn take(c: &paycode_db::sql::Connection<'_>, request: &str, amount: i64) -> Result<i64, E> {
    let sql = format!(
        "SELECT balance FROM accounts WHERE name = 'a'{}",
        c.for_update()
    );
    let balance: i64 = c.query_row(&sql, [], |r| r.get(0))?;
    if let Some(id) = c
        .query_row(
            "SELECT move_id FROM moves WHERE request_id = ?1",
            [request],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
    {
        return Ok(id);
    }
    if balance < amount {
        return Err(E::Refused(format!("balance {balance}")));
    }
    c.execute(
        "UPDATE accounts SET balance = ?1 WHERE name = 'a'",
        [balance - amount],
    )?;
    let id = c.query_row(
        "INSERT INTO moves (request_id, account, amount) VALUES (?1, 'a', ?2) RETURNING move_id",
        params![request, amount],
        |r| r.get(0),
    )?;
    Ok(id)
}

fn balance_and_moves(db: &Db) -> (i64, i64, i64) {
    db.read_blocking(|c| {
        let balance: i64 =
            c.query_row("SELECT balance FROM accounts WHERE name = 'a'", [], |r| {
                r.get(0)
            })?;
        let (n, sum): (i64, i64) = c.query_row(
            "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM moves",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok::<_, E>((balance, n, sum))
    })
    .unwrap()
}

#[test]
fn concurrent_duplicates_apply_once_and_the_balance_never_goes_below_zero() {
    for (_dir, db) in engines() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        // 40 distinct requests of 30 (only 33 fit in 1000), each sent 3 times at once.
        let (ok, refused) = rt.block_on(async {
            let mut tasks = Vec::new();
            for i in 0..120 {
                let db = db.clone();
                tasks.push(tokio::spawn(async move {
                    let request = format!("r{}", i % 40);
                    db.write(move |c| take(c, &request, 30)).await
                }));
            }
            let (mut ok, mut refused) = (0, 0);
            for t in tasks {
                match t.await.unwrap() {
                    Ok(_) => ok += 1,
                    Err(E::Refused(_)) => refused += 1,
                    Err(other) => panic!("{:?}: {other}", db.engine()),
                }
            }
            (ok, refused)
        });
        let (balance, n, sum) = balance_and_moves(&db);
        assert_eq!(n, 33, "{:?}", db.engine());
        assert_eq!(sum, 990);
        assert_eq!(balance, 10);
        // Exactly as if run one after the other: the 33 requests that fit and their copies
        // succeed, the 7 that do not and their copies are refused.
        assert_eq!((ok, refused), (99, 21), "{:?}", db.engine());
    }
}

#[test]
fn a_unit_that_meets_a_serialization_failure_is_re_run_and_applied_once() {
    for (_dir, db) in engines() {
        if db.engine() != Engine::Postgres {
            continue;
        }
        let runs = Arc::new(AtomicU32::new(0));
        let seen = runs.clone();
        let id = db
            .write_blocking(move |c| {
                let id = take(c, "forced", 100)?;
                if seen.fetch_add(1, Ordering::SeqCst) < 2 {
                    // What PostgreSQL says when two serializable units collide.
                    c.execute_batch(
                        "DO $$ BEGIN RAISE EXCEPTION 'forced' USING ERRCODE = '40001'; END $$",
                    )?;
                }
                Ok::<_, E>(id)
            })
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        let (balance, n, sum) = balance_and_moves(&db);
        assert_eq!((balance, n, sum), (900, 1, 100));
        // The third run's insert is the only one: its id is the one stored.
        let stored: i64 = db
            .read_blocking(|c| {
                Ok::<_, E>(c.query_row(
                    "SELECT move_id FROM moves WHERE request_id = 'forced'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(stored, id);
    }
}

#[test]
fn a_failing_unit_leaves_nothing_and_a_genuine_duplicate_is_a_named_unique_error() {
    for (_dir, db) in engines() {
        let r = db.write_blocking(|c| {
            take(c, "x", 100)?;
            Err::<(), E>(E::Refused("after writing".into()))
        });
        assert!(matches!(r, Err(E::Refused(_))));
        assert_eq!(balance_and_moves(&db), (1000, 0, 0), "{:?}", db.engine());
        db.write_blocking(|c| {
            c.execute(
                "INSERT INTO moves (request_id, account, amount) VALUES ('d', 'a', 1)",
                [],
            )?;
            Ok::<_, E>(())
        })
        .unwrap();
        let dup = db.write_blocking(|c| {
            c.execute(
                "INSERT INTO moves (request_id, account, amount) VALUES ('d', 'a', 1)",
                [],
            )?;
            Ok::<_, E>(())
        });
        match dup {
            Err(E::Db(DbError::Sql(e))) => assert_eq!(
                paycode_db::failure_of(&e),
                paycode_db::Failure::Unique("moves.request_id".into()),
                "{:?}",
                db.engine()
            ),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn values_read_back_as_written_and_large_results_stream() {
    for (_dir, db) in engines() {
        db.write_blocking(|c| {
            for i in 0..2_500i64 {
                c.execute(
                    "INSERT INTO moves (request_id, account, amount, note) VALUES (?1, 'a', ?2, ?3)",
                    params![format!("s{i}"), i - 1_000, if i % 2 == 0 { Some(vec![i as u8, 0, 255]) } else { None }],
                )?;
            }
            Ok::<_, E>(())
        })
        .unwrap();
        let (n, sum, blobs) = db
            .read_blocking(|c| {
                let mut st = c.prepare("SELECT amount, note FROM moves ORDER BY move_id")?;
                let mut rows = st.query([])?;
                let (mut n, mut sum, mut blobs) = (0i64, 0i64, 0i64);
                while let Some(r) = rows.next()? {
                    let amount: i64 = r.get(0)?;
                    let note: Option<Vec<u8>> = r.get(1)?;
                    if let Some(b) = note {
                        assert_eq!(b, vec![(amount + 1_000) as u8, 0, 255]);
                        blobs += 1;
                    }
                    n += 1;
                    sum += amount;
                }
                let total: i64 = c.query_row("SELECT SUM(amount) FROM moves", [], |r| r.get(0))?;
                assert_eq!(total, sum);
                let exists: bool = c.query_row(
                    "SELECT EXISTS (SELECT 1 FROM moves WHERE amount < ?1)",
                    [-999i64],
                    |r| r.get(0),
                )?;
                assert!(exists);
                Ok::<_, E>((n, sum, blobs))
            })
            .unwrap();
        assert_eq!(n, 2_500, "{:?}", db.engine());
        assert_eq!(sum, (0..2_500i64).map(|i| i - 1_000).sum::<i64>());
        assert_eq!(blobs, 1_250);
    }
}

#[test]
fn a_missing_database_is_one_line_saying_how_to_create_it() {
    let Some(t) = paycode_db::test_pg_target("missing") else {
        return;
    };
    let url = match t.url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/paycode_no_such_database"),
        None => return,
    };
    let r = Db::open_at(
        &Location::Postgres(paycode_db::PgTarget::new(&url, "s")),
        &[],
        DbConfig::default(),
    );
    match r {
        Err(DbError::Unreachable(msg)) => {
            assert!(
                msg.contains("does not exist") && msg.contains("createdb"),
                "{msg}"
            );
            assert!(!msg.contains('\n'), "{msg}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("opened a database that does not exist"),
    }
}
