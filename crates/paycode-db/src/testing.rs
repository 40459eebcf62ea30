//! Stores on every engine for the services' storage conformance suites (feature `testing`):
//! a fresh SQLite file always, and a fresh PostgreSQL schema when `PAYCODE_TEST_DATABASE_URL`
//! is set, opened with a service's migrations.

use crate::sql::{Connection, Engine};
use crate::{Db, DbConfig, Location, Migration, StoreError};

/// One engine's store, with as many handles as the test asked for.
pub struct TestStore {
    pub label: &'static str,
    pub dbs: Vec<Db>,
    _dir: tempfile::TempDir,
}

type StoreResult<T> = Result<T, StoreError>;

impl TestStore {
    pub fn db(&self) -> &Db {
        &self.dbs[0]
    }

    pub fn engine(&self) -> Engine {
        self.db().engine()
    }

    /// Runs a write unit and expects it to succeed.
    pub fn w<R, F>(&self, f: F) -> R
    where
        R: Send + 'static,
        F: Fn(&Connection<'_>) -> StoreResult<R> + Send + 'static,
    {
        self.try_w(f)
            .unwrap_or_else(|e| panic!("{}: write failed: {e:?}", self.label))
    }

    pub fn try_w<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: Fn(&Connection<'_>) -> StoreResult<R> + Send + 'static,
    {
        self.db().write_blocking(f)
    }

    /// Runs a read and expects it to succeed.
    pub fn r<R, F>(&self, f: F) -> R
    where
        F: Fn(&Connection<'_>) -> StoreResult<R>,
    {
        self.try_r(f)
            .unwrap_or_else(|e| panic!("{}: read failed: {e:?}", self.label))
    }

    pub fn try_r<R, F>(&self, f: F) -> StoreResult<R>
    where
        F: Fn(&Connection<'_>) -> StoreResult<R>,
    {
        self.db().read_blocking(f)
    }

    /// Runs raw SQL (a test's way to write what the service never writes).
    pub fn sql(&self, sql: &str) {
        let sql = sql.to_string();
        self.w(move |c| Ok(c.execute_batch(&sql)?));
    }
}

fn open(
    label: &str,
    location: &Location,
    migrations: &[Migration],
    group_commit: bool,
    n: usize,
) -> Vec<Db> {
    let config = DbConfig {
        pg_group_commit: group_commit,
        ..DbConfig::default()
    };
    (0..n)
        .map(|_| {
            Db::open_at(location, migrations, config.clone())
                .unwrap_or_else(|e| panic!("{label}: the store opens: {e}"))
        })
        .collect()
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary folder")
}

/// A fresh store on SQLite and, when configured, on PostgreSQL: for tests of one function at
/// a time.
pub fn stores(name: &str, migrations: &[Migration]) -> Vec<TestStore> {
    let dir = temp_dir();
    let file = Location::File(dir.path().join(format!("{name}.db")));
    let mut out = vec![TestStore {
        label: "sqlite",
        dbs: open("sqlite", &file, migrations, true, 1),
        _dir: dir,
    }];
    if let Some(t) = crate::test_pg_target(name) {
        out.push(TestStore {
            label: "postgres",
            dbs: open("postgres", &Location::Postgres(t), migrations, true, 1),
            _dir: temp_dir(),
        });
    }
    out
}

/// For races: SQLite (one handle twice, which serialises); and PostgreSQL on two handles of
/// one schema, which stand for two processes sharing the store, both with group commit (each
/// process's units batched) and with one transaction per unit.
pub fn racing_stores(name: &str, migrations: &[Migration]) -> Vec<TestStore> {
    let dir = temp_dir();
    let file = Location::File(dir.path().join(format!("{name}.db")));
    let db = open("sqlite", &file, migrations, true, 1).remove(0);
    let mut out = vec![TestStore {
        label: "sqlite",
        dbs: vec![db.clone(), db],
        _dir: dir,
    }];
    for (label, group_commit) in [
        ("postgres group commit", true),
        ("postgres per unit", false),
    ] {
        if let Some(t) = crate::test_pg_target(name) {
            out.push(TestStore {
                label,
                dbs: open(label, &Location::Postgres(t), migrations, group_commit, 2),
                _dir: temp_dir(),
            });
        }
    }
    out
}
