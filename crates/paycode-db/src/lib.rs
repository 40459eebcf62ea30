//! The store engines: embedded SQLite with group commit, or a PostgreSQL server.
//!
//! Both run **units of work**: a closure given a [`sql::Connection`] that runs in one
//! transaction and either commits whole or leaves nothing. A unit must be re-runnable (the
//! PostgreSQL engine re-runs it after a serialization failure, a deadlock, a unique-key race or
//! a connection lost before commit) and must do no network call; it is a plain synchronous
//! closure, so a database lock can never be held across an `.await`.
//!
//! **SQLite**: all writes go through one writer thread that takes every job waiting in its
//! queue (up to [`DbConfig::batch_max`]), runs each inside its own savepoint of a single
//! transaction, commits once, and only then answers each caller. One fsync thus makes a whole
//! batch of concurrent requests durable, and an acknowledged write is always on disk
//! (`journal_mode=WAL`, `synchronous=FULL`). A job that fails rolls back to its savepoint
//! without disturbing the others in its batch. Reads run on a small pool of read-only
//! connections, which in WAL mode never block on the writer.
//!
//! **PostgreSQL** ([`pg`]): a pool of sessions, each unit on one of them in its own
//! transaction — `READ COMMITTED` with the rows a write decides on locked
//! ([`sql::Connection::for_update`]), or `SERIALIZABLE` when configured — on a blocking
//! thread, never on the async runtime. Reads run in a `REPEATABLE READ READ ONLY` snapshot.

use rusqlite::OpenFlags;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tokio::sync::oneshot;

pub use rusqlite;

mod failure;
pub mod guess_counters;
pub mod migrate;
pub mod pg;
pub mod sql;
#[cfg(feature = "testing")]
pub mod testing;

pub use failure::{Failure, failure_of};
pub use migrate::Migration;
pub use pg::{Isolation, PgTarget};
use sql::Connection;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Sql(#[from] sql::Error),
    #[error("database writer has stopped")]
    WriterGone,
    #[error("database job panicked: {0}")]
    JobPanicked(String),
    #[error("cannot open database at {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// The PostgreSQL server cannot be reached or refused us; the message says what to do.
    #[error("{0}")]
    Unreachable(String),
    /// The connection was lost while a commit was under way: the unit may or may not have
    /// been applied, so it is not re-run.
    #[error("the database connection was lost during commit; the outcome is unknown")]
    CommitUnknown,
    /// A unit went on after one of its statements failed (PostgreSQL then refuses the rest).
    #[error("a statement of this unit failed and the unit went on: {0}")]
    Aborted(String),
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> DbError {
        DbError::Sql(sql::Error::from(e))
    }
}

/// Prepared statements kept per SQLite connection. A payment's units use a few dozen distinct
/// statements on the writer; rusqlite's default of 16 made the least recent ones be parsed
/// again on every payment once the risk rules added theirs.
const STATEMENT_CACHE_CAPACITY: usize = 256;

/// What a storage function of either service can fail with: the four cases its callers tell
/// apart, read from the engine's failure ([`failure_of`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row the statement must find is not there.
    #[error("{0} not found")]
    NotFound(String),
    /// An insert collided with an existing row on this key (`table.column`).
    #[error("a row with this {key} already exists")]
    Unique { key: String },
    /// A stored value the service never writes, or stored facts that contradict each other.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(DbError),
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> StoreError {
        match e {
            DbError::Sql(e) => StoreError::from(e),
            other => StoreError::Database(other),
        }
    }
}

impl From<sql::Error> for StoreError {
    fn from(e: sql::Error) -> StoreError {
        // A value of the wrong type, or one the row readers refuse (see their `FromSql` and
        // parsing), is a corrupt row, not a failed query.
        match failure_of(&e) {
            Failure::NoRow => StoreError::NotFound("row".to_string()),
            Failure::Unique(key) => StoreError::Unique { key },
            Failure::Corrupt(why) => StoreError::Corrupt(why),
            Failure::Other => StoreError::Database(DbError::Sql(e)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DbConfig {
    /// Most jobs committed in one transaction (SQLite).
    pub batch_max: usize,
    /// Read-only connections (SQLite).
    pub n_readers: usize,
    /// How long a connection waits on a lock held by another process (SQLite).
    pub busy_timeout_ms: u64,
    /// Sessions in the pool (PostgreSQL).
    pub pg_sessions: usize,
    /// Isolation of write units (PostgreSQL).
    pub pg_isolation: Isolation,
    /// Batch write units into one transaction on one session, as the SQLite writer does
    /// (PostgreSQL, `READ COMMITTED` only); otherwise each unit has a transaction of its own.
    pub pg_group_commit: bool,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig {
            batch_max: 512,
            n_readers: 4,
            busy_timeout_ms: 5_000,
            pg_sessions: 8,
            pg_isolation: Isolation::ReadCommitted,
            pg_group_commit: true,
        }
    }
}

impl DbConfig {
    /// The defaults with the PostgreSQL settings an operator may change from the environment:
    /// `PAYCODE_PG_ISOLATION` (`read-committed`, the default, or `serializable`) and
    /// `PAYCODE_PG_GROUP_COMMIT` (`1`, the default, or `0`: one transaction per unit, for a
    /// database without advisory locks). Group commit applies at `read-committed` only.
    pub fn from_env() -> Result<DbConfig, String> {
        DbConfig::from_vars(|k| std::env::var(k).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<DbConfig, String> {
        let mut c = DbConfig::default();
        if let Some(v) = var("PAYCODE_PG_ISOLATION") {
            c.pg_isolation = match v.as_str() {
                "read-committed" => Isolation::ReadCommitted,
                "serializable" => Isolation::Serializable,
                other => {
                    return Err(format!(
                        "PAYCODE_PG_ISOLATION={other:?}: use read-committed or serializable"
                    ));
                }
            };
        }
        if let Some(v) = var("PAYCODE_PG_GROUP_COMMIT") {
            c.pg_group_commit = match v.as_str() {
                "1" => true,
                "0" => false,
                other => return Err(format!("PAYCODE_PG_GROUP_COMMIT={other:?}: use 1 or 0")),
            };
        }
        Ok(c)
    }
}

/// Where a store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    File(PathBuf),
    /// A schema of a PostgreSQL database.
    Postgres(PgTarget),
}

type Completer = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&rusqlite::Connection) -> Completer + Send>;

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

enum Inner {
    Sqlite(SqliteInner),
    Postgres(Box<pg::Pool>),
}

struct SqliteInner {
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Mutex<Vec<rusqlite::Connection>>,
    readers_ready: std::sync::Condvar,
    path: PathBuf,
}

fn configure(conn: &rusqlite::Connection, busy_timeout_ms: u64) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_millis(busy_timeout_ms))?;
    // 16 MiB of page cache per connection (the default is 2 MiB), so that the upper levels of
    // the indexes stay in memory as the tables grow. One large transaction (a day's settlement
    // close) grows the WAL file; the size limit truncates it again at the next reset instead of
    // keeping its high-water mark on disk for good.
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; \
         PRAGMA cache_size=-16384; PRAGMA journal_size_limit=67108864;",
    )?;
    Ok(())
}

impl Db {
    /// Opens the store at `location`, creating it if needed, and applies the migrations it
    /// has not recorded yet.
    pub fn open_at(
        location: &Location,
        migrations: &[Migration],
        config: DbConfig,
    ) -> Result<Db, DbError> {
        match location {
            Location::File(path) => Db::open(path, migrations, config),
            Location::Postgres(target) => {
                // The blocking client may not run on an async runtime's thread: open on a
                // thread of its own (this runs once, at start-up).
                let pool = std::thread::scope(|s| {
                    s.spawn(|| pg::Pool::open(target, migrations, &config))
                        .join()
                        .unwrap_or_else(|p| Err(DbError::JobPanicked(panic_text(&p))))
                })?;
                Ok(Db {
                    inner: Arc::new(Inner::Postgres(Box::new(pool))),
                })
            }
        }
    }

    /// Opens (creating if needed) the SQLite database at `path` and applies `migrations`.
    pub fn open(path: &Path, migrations: &[Migration], config: DbConfig) -> Result<Db, DbError> {
        let open_err = |source| DbError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut writer = rusqlite::Connection::open(path).map_err(open_err)?;
        configure(&writer, config.busy_timeout_ms).map_err(open_err)?;
        writer.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        {
            let tx = writer.transaction()?;
            migrate::apply(&Connection::sqlite(&tx), migrations)?;
            tx.commit()?;
        }
        let mut readers = Vec::with_capacity(config.n_readers);
        for _ in 0..config.n_readers.max(1) {
            let r = rusqlite::Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(open_err)?;
            r.busy_timeout(Duration::from_millis(config.busy_timeout_ms))?;
            r.execute_batch("PRAGMA cache_size=-16384;")?;
            r.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
            readers.push(r);
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let batch_max = config.batch_max.max(1);
        let handle = std::thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || writer_loop(writer, rx, batch_max))
            .map_err(|e| DbError::JobPanicked(e.to_string()))?;
        Ok(Db {
            inner: Arc::new(Inner::Sqlite(SqliteInner {
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(Some(handle)),
                readers: Mutex::new(readers),
                readers_ready: std::sync::Condvar::new(),
                path: path.to_path_buf(),
            })),
        })
    }

    /// The SQLite file, or `None` on PostgreSQL.
    pub fn path(&self) -> Option<&Path> {
        match &*self.inner {
            Inner::Sqlite(s) => Some(&s.path),
            Inner::Postgres(_) => None,
        }
    }

    pub fn engine(&self) -> sql::Engine {
        match &*self.inner {
            Inner::Sqlite(_) => sql::Engine::Sqlite,
            Inner::Postgres(_) => sql::Engine::Postgres,
        }
    }

    fn submit<R, E, F>(s: &SqliteInner, f: F) -> Result<oneshot::Receiver<Result<R, E>>, E>
    where
        R: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: Fn(&Connection<'_>) -> Result<R, E> + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel::<Result<R, E>>();
        let job: Job = Box::new(move |conn: &rusqlite::Connection| -> Completer {
            let outcome = run_in_savepoint(conn, f);
            Box::new(move |commit: Result<(), String>| {
                let result = match (outcome, commit) {
                    (Ok(r), Ok(())) => Ok(r),
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(msg)) => Err(E::from(DbError::JobPanicked(msg))),
                };
                let _ = done_tx.send(result);
            })
        });
        let guard = s.writer.lock().expect("writer lock poisoned");
        let sender = guard.as_ref().ok_or_else(|| E::from(DbError::WriterGone))?;
        sender.send(job).map_err(|_| E::from(DbError::WriterGone))?;
        Ok(done_rx)
    }

    /// Runs the unit of work `f` and returns its result once committed. If `f` returns an
    /// error its changes are rolled back and the error is returned. `f` may run more than once
    /// (see the module documentation); only its last run's changes persist.
    pub async fn write<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: Fn(&Connection<'_>) -> Result<R, E> + Send + 'static,
    {
        match &*self.inner {
            Inner::Sqlite(s) => {
                let rx = Db::submit(s, f)?;
                rx.await
                    .unwrap_or_else(|_| Err(E::from(DbError::WriterGone)))
            }
            Inner::Postgres(pool) if pool.has_writer() => pool
                .submit(f)?
                .await
                .unwrap_or_else(|_| Err(E::from(DbError::WriterGone))),
            Inner::Postgres(_) => {
                let db = self.clone();
                tokio::task::spawn_blocking(move || db.write_blocking(f))
                    .await
                    .unwrap_or_else(|e| Err(E::from(DbError::JobPanicked(e.to_string()))))
            }
        }
    }

    /// [`Db::write`] for synchronous callers (CLI tools, tests). Must not be called on an async
    /// runtime thread.
    pub fn write_blocking<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: Fn(&Connection<'_>) -> Result<R, E> + Send + 'static,
    {
        match &*self.inner {
            Inner::Sqlite(s) => {
                let rx = Db::submit(s, f)?;
                rx.blocking_recv()
                    .unwrap_or_else(|_| Err(E::from(DbError::WriterGone)))
            }
            Inner::Postgres(pool) if pool.has_writer() => pool
                .submit(f)?
                .blocking_recv()
                .unwrap_or_else(|_| Err(E::from(DbError::WriterGone))),
            Inner::Postgres(pool) => pool.run(true, &f),
        }
    }

    /// Runs a read on a pooled connection, off the async threads.
    pub async fn read<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: Fn(&Connection<'_>) -> Result<R, E> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.read_blocking(f))
            .await
            .unwrap_or_else(|e| Err(E::from(DbError::JobPanicked(e.to_string()))))
    }

    /// [`Db::read`] for synchronous callers.
    pub fn read_blocking<R, E, F>(&self, f: F) -> Result<R, E>
    where
        E: From<DbError>,
        F: Fn(&Connection<'_>) -> Result<R, E>,
    {
        let s = match &*self.inner {
            Inner::Sqlite(s) => s,
            Inner::Postgres(pool) => return pool.run(false, &f),
        };
        let conn = {
            let mut pool = s.readers.lock().expect("reader pool poisoned");
            loop {
                if let Some(c) = pool.pop() {
                    break c;
                }
                pool = s.readers_ready.wait(pool).expect("reader pool poisoned");
            }
        };
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(&Connection::sqlite(&conn))));
        s.readers.lock().expect("reader pool poisoned").push(conn);
        s.readers_ready.notify_one();
        result.unwrap_or_else(|p| Err(E::from(DbError::JobPanicked(panic_text(&p)))))
    }

    /// Stops the writer after the jobs already queued and waits for it (SQLite), or closes
    /// the pool's sessions (PostgreSQL).
    pub fn close(&self) {
        match &*self.inner {
            Inner::Sqlite(s) => stop_writer(&s.writer, &s.writer_thread),
            Inner::Postgres(pool) => pool.close(),
        }
    }
}

/// The variable that points the test suites at a PostgreSQL database.
pub const TEST_DATABASE_URL: &str = "PAYCODE_TEST_DATABASE_URL";

/// Where a test's store goes: a fresh schema of the database named by
/// `PAYCODE_TEST_DATABASE_URL` when it is set, else the SQLite file `dir/name.db`.
pub fn test_location(dir: &Path, name: &str) -> Location {
    match test_pg_target(name) {
        Some(t) => Location::Postgres(t),
        None => Location::File(dir.join(format!("{name}.db"))),
    }
}

/// A new database on the server of the test database, if one is configured, named after
/// `name` and made unique; its URL. For tests of whole processes, which keep their stores in
/// fixed schemas (`acquirer`, `wallet_NAME`) and so each need a database of their own.
pub fn create_test_database(name: &str) -> Result<Option<String>, DbError> {
    let Some(target) = test_pg_target(name) else {
        return Ok(None);
    };
    let database = target.schema.clone();
    let url = target.url.clone();
    let create = move || -> Result<(), DbError> {
        let mut client = url
            .parse::<postgres::Config>()
            .map_err(|e| DbError::Unreachable(format!("{TEST_DATABASE_URL}: {e}")))?
            .connect(postgres::NoTls)
            .map_err(|e| DbError::Unreachable(format!("{TEST_DATABASE_URL}: {e}")))?;
        client
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .map_err(|e| DbError::Sql(e.into()))
    };
    std::thread::scope(|s| {
        s.spawn(create)
            .join()
            .unwrap_or_else(|p| Err(DbError::JobPanicked(panic_text(&p))))
    })?;
    Ok(Some(with_database(&target.url, &target.schema)))
}

/// `url` naming the database `database` instead of its own.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

/// A fresh schema of the test database, if one is configured.
pub fn test_pg_target(name: &str) -> Option<PgTarget> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let url = std::env::var(TEST_DATABASE_URL)
        .ok()
        .filter(|u| !u.is_empty())?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let clean: String = pg::schema_word(name).chars().take(24).collect();
    let schema = format!(
        "t{}_{}_{nanos}_{clean}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    Some(PgTarget::new(&url, &schema))
}

/// Closes a writer's queue (it finishes the jobs already queued) and waits for its thread.
pub(crate) fn stop_writer<J>(
    writer: &Mutex<Option<mpsc::Sender<J>>>,
    thread: &Mutex<Option<std::thread::JoinHandle<()>>>,
) {
    writer.lock().expect("writer lock poisoned").take();
    if let Some(h) = thread.lock().expect("writer thread lock poisoned").take() {
        let _ = h.join();
    }
}

pub(crate) fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

/// Runs a fixed statement through the statement cache: the transaction-control statements run
/// several times per payment and are not worth re-parsing each time.
fn run_cached(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn run_in_savepoint<R, E, F>(conn: &rusqlite::Connection, f: F) -> Result<R, E>
where
    E: From<DbError>,
    F: Fn(&Connection<'_>) -> Result<R, E>,
{
    run_cached(conn, "SAVEPOINT job").map_err(|e| E::from(DbError::from(e)))?;
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| f(&Connection::sqlite(conn))))
        .unwrap_or_else(|p| Err(E::from(DbError::JobPanicked(panic_text(&p)))));
    let end = match outcome {
        Ok(_) => run_cached(conn, "RELEASE job"),
        Err(_) => {
            run_cached(conn, "ROLLBACK TO job").and_then(|()| run_cached(conn, "RELEASE job"))
        }
    };
    match end {
        Ok(()) => outcome,
        Err(e) => Err(E::from(DbError::from(e))),
    }
}

fn writer_loop(conn: rusqlite::Connection, rx: mpsc::Receiver<Job>, batch_max: usize) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < batch_max {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = run_cached(&conn, "BEGIN IMMEDIATE") {
            let msg = format!("cannot begin transaction: {e}");
            tracing::error!(error = %e, "group commit could not begin");
            for job in jobs {
                // The job never ran; tell its caller through the commit outcome.
                let completer = run_never(job, &conn);
                completer(Err(msg.clone()));
            }
            continue;
        }
        let completers: Vec<Completer> = jobs.into_iter().map(|job| job(&conn)).collect();
        let commit = run_cached(&conn, "COMMIT").map_err(|e| {
            tracing::error!(error = %e, "group commit failed");
            let _ = conn.execute_batch("ROLLBACK");
            format!("commit failed: {e}")
        });
        for c in completers {
            c(commit.clone());
        }
    }
}

/// Runs a job inside a transaction that is then rolled back: used only when `BEGIN` failed, so
/// that the caller still gets an answer. Its changes never persist.
fn run_never(job: Job, conn: &rusqlite::Connection) -> Completer {
    let _ = conn.execute_batch("BEGIN");
    let c = job(conn);
    let _ = conn.execute_batch("ROLLBACK");
    c
}

#[cfg(test)]
mod tests {

    #[test]
    fn postgres_settings_come_from_the_environment_and_mistakes_are_named() {
        let vars = |list: &'static [(&str, &str)]| {
            move |k: &str| {
                list.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let d = DbConfig::from_vars(vars(&[])).unwrap();
        assert_eq!(
            (d.pg_isolation, d.pg_group_commit),
            (Isolation::ReadCommitted, true)
        );
        let c = DbConfig::from_vars(vars(&[
            ("PAYCODE_PG_ISOLATION", "serializable"),
            ("PAYCODE_PG_GROUP_COMMIT", "0"),
        ]))
        .unwrap();
        assert_eq!(
            (c.pg_isolation, c.pg_group_commit),
            (Isolation::Serializable, false)
        );
        let e = DbConfig::from_vars(vars(&[("PAYCODE_PG_ISOLATION", "snapshot")])).unwrap_err();
        assert!(e.contains("use read-committed or serializable"), "{e}");
        let e = DbConfig::from_vars(vars(&[("PAYCODE_PG_GROUP_COMMIT", "yes")])).unwrap_err();
        assert!(e.contains("PAYCODE_PG_GROUP_COMMIT=\"yes\""), "{e}");
    }

    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum TestError {
        #[error(transparent)]
        Db(#[from] DbError),
        #[error("refused")]
        Refused,
    }

    fn open() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(
            &dir.path().join("t.db"),
            &[Migration::new(
                1,
                "t",
                "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL);",
            )],
            DbConfig::default(),
        )
        .unwrap();
        (dir, db)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_commit_and_a_failing_job_leaves_the_others_alone() {
        let (_dir, db) = open();
        let mut tasks = Vec::new();
        for i in 0..200i64 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.write(move |c| {
                    c.execute("INSERT INTO t (k, v) VALUES (?1, ?2)", (format!("k{i}"), i))
                        .map_err(DbError::from)?;
                    if i % 10 == 0 {
                        return Err(TestError::Refused);
                    }
                    Ok(i)
                })
                .await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            if t.await.unwrap().is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 180);
        let (n, sum): (i64, i64) = db
            .read(|c| {
                c.query_row("SELECT COUNT(*), SUM(v) FROM t", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(|e| TestError::Db(e.into()))
            })
            .await
            .unwrap();
        assert_eq!(n, 180);
        assert_eq!(sum, (0..200).filter(|i| i % 10 != 0).sum::<i64>());
    }

    #[test]
    fn a_url_is_pointed_at_another_database() {
        assert_eq!(
            with_database("postgres://u@h:5432/a?sslmode=disable", "b"),
            "postgres://u@h:5432/b?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "b"), "postgres://u@h/b");
        assert_eq!(
            with_database("postgres://u@h:1/a", "b"),
            "postgres://u@h:1/b"
        );
    }

    /// Found by the soak: one day's settlement close of a million payments grew the acquirer's
    /// WAL to 400 MB, and the file kept that size for good.
    #[tokio::test]
    async fn the_wal_file_shrinks_back_after_one_large_transaction() {
        let (dir, db) = open();
        let wal = dir.path().join("t.db-wal");
        let large: Result<usize, TestError> = db
            .write(|c| {
                Ok(c.execute(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 120000) \
                     INSERT INTO t SELECT printf('%0800d', i), i FROM n",
                    [],
                )
                .map_err(DbError::from)?)
            })
            .await;
        assert_eq!(large.unwrap(), 120_000);
        let grown = std::fs::metadata(&wal).unwrap().len();
        assert!(
            grown > 128 << 20,
            "the large transaction went through the WAL: {grown}"
        );
        for i in 0..3 {
            let r: Result<usize, TestError> = db
                .write(move |c| {
                    Ok(
                        c.execute("INSERT INTO t VALUES (?1, 0)", [format!("small-{i}")])
                            .map_err(DbError::from)?,
                    )
                })
                .await;
            r.unwrap();
        }
        let after = std::fs::metadata(&wal).unwrap().len();
        assert!(
            after <= 64 << 20,
            "the WAL kept {after} bytes after the reset"
        );
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_not_a_dead_writer() {
        let (_dir, db) = open();
        let r: Result<(), TestError> = db.write(|_| panic!("boom")).await;
        assert!(matches!(r, Err(TestError::Db(DbError::JobPanicked(_)))));
        let r: Result<usize, TestError> = db
            .write(|c| {
                Ok(c.execute("INSERT INTO t VALUES ('a', 1)", [])
                    .map_err(DbError::from)?)
            })
            .await;
        assert_eq!(r.unwrap(), 1);
    }
}
