//! The PostgreSQL engine: a pool of sessions running units of work, each in its own
//! transaction on a blocking thread, re-run when the database says it may be.
//!
//! **Re-runs.** A unit is re-run from the start, on a fresh transaction, when its transaction
//! failed for a reason that a second run can get past: a serialization failure (`40001`) or a
//! deadlock (`40P01`), up to [`MAX_CONFLICT_RUNS`] times with a short random backoff; a
//! unique-key violation (`23505`), which under `READ COMMITTED` means another unit inserted the
//! same key first and a re-run will find its row, up to [`MAX_UNIQUE_RUNS`] times; or a
//! connection lost before the commit was sent, on a new connection, up to
//! [`MAX_RECONNECT_RUNS`] times. A connection lost *during* commit is never re-run: the outcome
//! is unknown, and [`DbError::CommitUnknown`] says so. In a group-commit batch a unit that
//! meets a conflict is rolled back to its savepoint and run again in the *next* batch, not in
//! this one: re-run at once it would wait again on the same locks of another process's batch
//! while this batch's earlier units hold theirs, and the two batches would deadlock run after
//! run until the limit.
//!
//! **Isolation.** Write units run at `READ COMMITTED` (the default) or `SERIALIZABLE`
//! ([`Isolation`]). At `READ COMMITTED` the storage layers lock the rows a write decides on
//! (`SELECT … FOR UPDATE` through [`Connection::for_update`]) and let unique keys decide races
//! of inserts; nothing relies on one writer. Reads run in a `REPEATABLE READ READ ONLY`
//! snapshot, so a read unit sees one state of the store, as SQLite's readers do.

use crate::migrate::{self, Migration};
use crate::sql::{Connection, StatementCache, sqlstate_of};
use crate::{DbConfig, DbError, panic_text};
use postgres::{IsolationLevel, NoTls};
use std::panic::AssertUnwindSafe;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Runs of a unit that keeps meeting serialization failures or deadlocks.
pub const MAX_CONFLICT_RUNS: u32 = 12;
/// Runs of a unit that keeps meeting unique-key violations (a genuine duplicate fails every
/// run and is returned as the unit's own error).
pub const MAX_UNIQUE_RUNS: u32 = 3;
/// Most units in one group-commit transaction (PostgreSQL's subtransaction cache per backend).
pub const PG_BATCH_MAX: usize = 64;
/// How many runs a unit gets when its transaction failed with `code` (1: not re-run).
fn runs_allowed(code: &str) -> u32 {
    match code {
        "40001" | "40P01" => MAX_CONFLICT_RUNS,
        "23505" => MAX_UNIQUE_RUNS,
        "08006" => MAX_RECONNECT_RUNS,
        _ => 1,
    }
}

/// Runs of a unit whose connection was lost before commit.
pub const MAX_RECONNECT_RUNS: u32 = 3;

/// A store in a PostgreSQL database: the server's URL and the schema the store's tables live
/// in (one per service, so that the acquirer and each wallet could be separate servers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTarget {
    pub url: String,
    pub schema: String,
}

impl PgTarget {
    pub fn new(url: &str, schema: &str) -> PgTarget {
        PgTarget {
            url: url.to_string(),
            schema: schema.to_string(),
        }
    }
}

/// The isolation of write units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    ReadCommitted,
    Serializable,
}

struct Session {
    client: postgres::Client,
    cache: StatementCache,
}

struct State {
    idle: Vec<Session>,
    open: usize,
    closed: bool,
}

pub(crate) struct Pool {
    target: PgTarget,
    config: postgres::Config,
    max: usize,
    isolation: Isolation,
    state: Mutex<State>,
    ready: Condvar,
    /// The group-commit writer, when write units are batched (`READ COMMITTED` only).
    writer: Mutex<Option<std::sync::mpsc::Sender<PgJob>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// A write unit queued for the group-commit writer: given the batch's transaction (or `None`
/// when the writer has no connection), it runs and returns what to tell its caller once the
/// batch's commit is known, or itself again to be run in the next batch.
pub(crate) type PgJob = Box<dyn FnOnce(Option<&Connection<'_>>) -> JobRun + Send>;
pub(crate) type Completer = Box<dyn FnOnce(Result<(), String>) + Send>;

/// What a queued unit did in a batch.
pub(crate) enum JobRun {
    /// It ran (to success or for good); this tells its caller once the commit is known.
    Done(Completer),
    /// It met a serialization failure or a deadlock. Re-running it inside the batch would wait
    /// again on the same locks while the batch's earlier units keep holding theirs (two
    /// processes' batches then deadlock each other run after run), so it is rolled back and
    /// run again in the next batch, after this one's commit released every lock.
    Again(PgJob),
}

/// What one run of a unit came to.
enum Run<R, E> {
    Done(Result<R, E>),
    /// May be re-run (the SQLSTATE says why); the result is what to answer if it may not.
    Again(&'static str, Result<R, E>),
}

/// A schema name paycode accepts: lower-case letters, digits and `_`, not starting with a
/// digit (so it is never quoted and never injected).
pub fn valid_schema_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// `name` as a word of a schema name: lower-case ASCII letters and digits, `_` for the rest.
pub fn schema_word(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Where the URL points, without its password.
fn describe(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let port = config
        .get_ports()
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let port = if port.is_empty() {
        "5432".to_string()
    } else {
        port
    };
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

impl Pool {
    pub(crate) fn open(
        target: &PgTarget,
        migrations: &[Migration],
        db_config: &DbConfig,
    ) -> Result<Pool, DbError> {
        if !valid_schema_name(&target.schema) {
            return Err(DbError::Unreachable(format!(
                "the schema name {:?} is not valid: use lower-case letters, digits and _",
                target.schema
            )));
        }
        let config: postgres::Config = target.url.parse().map_err(|e| {
            DbError::Unreachable(format!(
                "the database URL is not valid ({e}); write it as postgres://USER@HOST:PORT/DATABASE"
            ))
        })?;
        let pool = Pool {
            target: target.clone(),
            config,
            max: db_config.pg_sessions.max(1),
            isolation: db_config.pg_isolation,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            writer: Mutex::new(None),
            writer_thread: Mutex::new(None),
        };
        let mut client = pool.connect_client()?;
        // Two processes creating the schema at once: one of them sees a unique violation on
        // the catalog; it exists either way.
        let create = format!("CREATE SCHEMA IF NOT EXISTS {}", target.schema);
        if let Err(e) = client.batch_execute(&create)
            && sqlstate_of(&e) != "23505"
        {
            return Err(DbError::Sql(e.into()));
        }
        let mut session = pool.init(client)?;
        {
            let Session { client, cache } = &mut session;
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::ReadCommitted)
                .start()
                .map_err(|e| DbError::Sql(e.into()))?;
            let conn = Connection::pg(tx, cache, true);
            let applied = migrate::apply(&conn, migrations);
            match applied {
                Ok(_) => conn.finish_pg(true)?,
                Err(e) => {
                    let _ = conn.finish_pg(false);
                    return Err(e);
                }
            }
        }
        // Migrations changed the tables: start the pool with no statement prepared before.
        session.cache = StatementCache::default();
        let mut st = pool.state.lock().expect("pool lock poisoned");
        st.open = 1;
        st.idle.push(session);
        drop(st);
        if db_config.pg_group_commit && pool.isolation == Isolation::ReadCommitted {
            let writer_session = pool.connect_client().and_then(|c| pool.init(c))?;
            let (tx, rx) = std::sync::mpsc::channel::<PgJob>();
            let reconnect = (pool.config.clone(), pool.target.schema.clone());
            // Each unit of a batch is a subtransaction; beyond 64 in one transaction PostgreSQL
            // overflows its per-backend cache of them and every snapshot gets slower.
            let batch_max = db_config.batch_max.clamp(1, PG_BATCH_MAX);
            let handle = std::thread::Builder::new()
                .name("db-writer-pg".into())
                .spawn(move || writer_loop(writer_session, reconnect, rx, batch_max))
                .map_err(|e| DbError::JobPanicked(e.to_string()))?;
            *pool.writer.lock().expect("writer lock poisoned") = Some(tx);
            *pool.writer_thread.lock().expect("writer lock poisoned") = Some(handle);
        }
        Ok(pool)
    }

    /// Whether write units go through the group-commit writer.
    pub(crate) fn has_writer(&self) -> bool {
        self.writer.lock().expect("writer lock poisoned").is_some()
    }

    /// Queues a write unit on the group-commit writer.
    pub(crate) fn submit<R, E, F>(
        &self,
        f: F,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<R, E>>, E>
    where
        R: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: Fn(&Connection<'_>) -> Result<R, E> + Send + 'static,
    {
        let guard = self.writer.lock().expect("writer lock poisoned");
        let sender = guard.as_ref().ok_or_else(|| E::from(DbError::WriterGone))?;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<R, E>>();
        let job = unit_job(f, done_tx, 1);
        sender
            .send(job)
            .map(|()| done_rx)
            .map_err(|_| E::from(DbError::WriterGone))
    }

    fn connect_client(&self) -> Result<postgres::Client, DbError> {
        self.config.connect(NoTls).map_err(|e| {
            let at = describe(&self.config);
            let db = self.config.get_dbname().unwrap_or("postgres");
            DbError::Unreachable(match e.code() {
                Some(c) if *c == postgres::error::SqlState::INVALID_CATALOG_NAME => format!(
                    "the PostgreSQL database at {at} does not exist: create it first \
                     (createdb {db}, or CREATE DATABASE {db}); paycode creates its own tables in it"
                ),
                _ => format!(
                    "cannot reach PostgreSQL at {at}: {e}. Start the server, or give \
                     --database-url postgres://USER@HOST:PORT/DATABASE"
                ),
            })
        })
    }

    fn init(&self, client: postgres::Client) -> Result<Session, DbError> {
        init_session(client, &self.target.schema).map_err(|e| DbError::Sql(e.into()))
    }

    fn take(&self) -> Result<Session, DbError> {
        let mut st = self.state.lock().expect("pool lock poisoned");
        loop {
            if st.closed {
                return Err(DbError::WriterGone);
            }
            if let Some(s) = st.idle.pop() {
                return Ok(s);
            }
            if st.open < self.max {
                st.open += 1;
                drop(st);
                let session = self.connect_client().and_then(|c| self.init(c));
                if session.is_err() {
                    self.discard();
                }
                return session;
            }
            st = self.ready.wait(st).expect("pool lock poisoned");
        }
    }

    fn give_back(&self, session: Session) {
        if session.client.is_closed() {
            return self.discard();
        }
        let mut st = self.state.lock().expect("pool lock poisoned");
        if st.closed {
            st.open = st.open.saturating_sub(1);
        } else {
            st.idle.push(session);
        }
        drop(st);
        self.ready.notify_one();
    }

    fn discard(&self) {
        let mut st = self.state.lock().expect("pool lock poisoned");
        st.open = st.open.saturating_sub(1);
        drop(st);
        self.ready.notify_one();
    }

    pub(crate) fn close(&self) {
        crate::stop_writer(&self.writer, &self.writer_thread);
        let mut st = self.state.lock().expect("pool lock poisoned");
        st.closed = true;
        let idle = std::mem::take(&mut st.idle);
        st.open = st.open.saturating_sub(idle.len());
        drop(st);
        self.ready.notify_all();
        drop_off_runtime(idle);
    }

    /// Runs the unit `f` until it commits, fails for good, or may not be re-run.
    pub(crate) fn run<R, E, F>(&self, write: bool, f: &F) -> Result<R, E>
    where
        E: From<DbError>,
        F: Fn(&Connection<'_>) -> Result<R, E>,
    {
        let mut runs = 0u32;
        loop {
            runs += 1;
            let mut session = self.take().map_err(E::from)?;
            let run = self.run_once(&mut session, write, f);
            self.give_back(session);
            match run {
                Run::Done(result) => return result,
                Run::Again(code, result) => {
                    if runs >= runs_allowed(code) {
                        return result;
                    }
                    metrics_retry(code);
                    if code != "23505" {
                        std::thread::sleep(backoff(runs));
                    }
                }
            }
        }
    }

    fn run_once<R, E, F>(&self, session: &mut Session, write: bool, f: &F) -> Run<R, E>
    where
        E: From<DbError>,
        F: Fn(&Connection<'_>) -> Result<R, E>,
    {
        let Session { client, cache } = session;
        let mut builder = client.build_transaction();
        builder = if write {
            builder.isolation_level(match self.isolation {
                Isolation::ReadCommitted => IsolationLevel::ReadCommitted,
                Isolation::Serializable => IsolationLevel::Serializable,
            })
        } else {
            builder
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
        };
        let tx = match builder.start() {
            Ok(tx) => tx,
            Err(e) => {
                let lost = e.is_closed();
                let err = Err(E::from(DbError::Sql(e.into())));
                return if lost {
                    Run::Again("08006", err)
                } else {
                    Run::Done(err)
                };
            }
        };
        let conn = Connection::pg(tx, cache, write);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| f(&conn)));
        let failed = conn.pg_failure();
        let retryable = |code: &str| runs_allowed(code) > 1;
        match outcome {
            Err(p) => {
                let _ = conn.finish_pg(false);
                Run::Done(Err(E::from(DbError::JobPanicked(panic_text(&p)))))
            }
            Ok(Err(e)) => {
                let _ = conn.finish_pg(false);
                match failed {
                    Some(code) if retryable(code) => Run::Again(code, Err(e)),
                    _ => Run::Done(Err(e)),
                }
            }
            Ok(Ok(r)) => {
                if let Some(code) = failed {
                    // The unit swallowed a failed statement: PostgreSQL has refused everything
                    // after it, so nothing of this run may be committed.
                    let _ = conn.finish_pg(false);
                    let err = Err(E::from(DbError::Aborted(format!("SQLSTATE {code}"))));
                    return if retryable(code) {
                        Run::Again(code, err)
                    } else {
                        Run::Done(err)
                    };
                }
                match conn.finish_pg(true) {
                    Ok(()) => Run::Done(Ok(r)),
                    Err(crate::sql::Error::Postgres(e)) => {
                        let code = sqlstate_of(&e);
                        if code == "08006" {
                            Run::Done(Err(E::from(DbError::CommitUnknown)))
                        } else if retryable(code) {
                            Run::Again(code, Err(E::from(DbError::Sql(e.into()))))
                        } else {
                            Run::Done(Err(E::from(DbError::Sql(e.into()))))
                        }
                    }
                    Err(e) => Run::Done(Err(E::from(DbError::Sql(e)))),
                }
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.state.get_mut().expect("pool lock poisoned").idle);
        drop_off_runtime(idle);
    }
}

/// Closes sessions on a thread of their own: closing one blocks on its connection, which may
/// not happen on an async runtime's thread (where the last handle of a store often goes).
fn drop_off_runtime(sessions: Vec<Session>) {
    if sessions.is_empty() {
        return;
    }
    if tokio::runtime::Handle::try_current().is_err() {
        drop(sessions);
        return;
    }
    let _ = std::thread::Builder::new()
        .name("db-close".into())
        .spawn(move || drop(sessions));
}

/// A session on `schema`, with nothing prepared yet.
fn init_session(mut client: postgres::Client, schema: &str) -> Result<Session, postgres::Error> {
    client.batch_execute(&format!(
        "SET search_path TO {schema}; SET application_name TO 'paycode'"
    ))?;
    Ok(Session {
        client,
        cache: StatementCache::default(),
    })
}

/// What a batch's callers are told when the connection was lost during its commit.
const COMMIT_UNKNOWN: &str = "commit outcome unknown";

/// The writer's job for unit `f`, in its `run`-th batch.
fn unit_job<R, E, F>(f: F, done_tx: tokio::sync::oneshot::Sender<Result<R, E>>, run: u32) -> PgJob
where
    R: Send + 'static,
    E: From<DbError> + Send + 'static,
    F: Fn(&Connection<'_>) -> Result<R, E> + Send + 'static,
{
    Box::new(move |conn: Option<&Connection<'_>>| -> JobRun {
        let outcome = match conn {
            Some(conn) => match run_in_savepoint(conn, &f) {
                (Err(_), Some(code)) if run < runs_allowed(code) => {
                    metrics_retry(code);
                    return JobRun::Again(unit_job(f, done_tx, run + 1));
                }
                (outcome, _) => outcome,
            },
            None => Err(E::from(DbError::Unreachable(
                "the database cannot be reached".to_string(),
            ))),
        };
        JobRun::Done(Box::new(move |commit: Result<(), String>| {
            let result = match (outcome, commit) {
                (Ok(r), Ok(())) => Ok(r),
                (Err(e), _) => Err(e),
                (Ok(_), Err(msg)) if msg == COMMIT_UNKNOWN => Err(E::from(DbError::CommitUnknown)),
                (Ok(_), Err(msg)) => Err(E::from(DbError::Aborted(msg))),
            };
            let _ = done_tx.send(result);
        }))
    })
}

/// Runs one unit inside a savepoint of the batch's transaction, re-running it there when a
/// unique-key race can be got past by a second run; a unit that fails is rolled back to its
/// savepoint without disturbing the rest of the batch. A serialization failure or a deadlock
/// is returned with its SQLSTATE, for the unit to be run again in the next batch.
fn run_in_savepoint<R, E, F>(conn: &Connection<'_>, f: &F) -> (Result<R, E>, Option<&'static str>)
where
    E: From<DbError>,
    F: Fn(&Connection<'_>) -> Result<R, E>,
{
    let mut runs = 0u32;
    loop {
        runs += 1;
        if let Err(e) = conn.execute_batch("SAVEPOINT unit") {
            return (Err(E::from(DbError::Sql(e))), None);
        }
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| f(conn)));
        let failed = conn.pg_failure();
        let outcome = match outcome {
            Err(p) => Err(E::from(DbError::JobPanicked(panic_text(&p)))),
            Ok(Ok(_)) if failed.is_some() => Err(E::from(DbError::Aborted(format!(
                "SQLSTATE {}",
                failed.unwrap_or("?")
            )))),
            Ok(r) => r,
        };
        if outcome.is_ok() {
            // Left in place rather than released (one round trip less): the batch's commit
            // ends every savepoint, and the next unit's `SAVEPOINT unit` is the one a rollback
            // goes back to.
            return (outcome, None);
        }
        conn.clear_pg_failure();
        if let Err(e) = conn.execute_batch("ROLLBACK TO SAVEPOINT unit") {
            return (Err(E::from(DbError::Sql(e))), None);
        }
        let limit = match failed {
            // A lost connection takes the whole batch with it: not re-run inside it.
            Some("08006") | None => 1,
            Some(code @ ("40001" | "40P01")) => return (outcome, Some(code)),
            Some(code) => runs_allowed(code),
        };
        if runs >= limit {
            return (outcome, None);
        }
        metrics_retry(failed.unwrap_or("?"));
    }
}

/// Taken first in every group-commit transaction: the batches of all processes on one schema
/// take turns (a transaction advisory lock, released at commit). A batch holds the row locks of
/// all its units until it commits, so two processes' batches that each lock one hot row (a
/// merchant's day counter, a ledger balance) and then want the other's deadlock, and PostgreSQL
/// needs `deadlock_timeout` (1 s) to notice: measured, two processes made 24 payments/s where
/// one made 740. Taking turns costs one round trip per batch; units still wait on row locks of
/// transactions that are not batches.
const BATCH_TURN: &str = "SELECT pg_advisory_xact_lock(1885436259, hashtext(current_schema()))";

/// The group-commit writer: takes every unit waiting (up to `batch_max`), runs each in its own
/// savepoint of one `READ COMMITTED` transaction, commits once and then answers each caller.
/// One commit (one WAL flush) covers the batch, and the rows a batch locks are held by one
/// transaction instead of being fought over by many. Units of other processes still take turns
/// with it through the same row locks and unique keys.
fn writer_loop(
    session: Session,
    reconnect: (postgres::Config, String),
    rx: std::sync::mpsc::Receiver<PgJob>,
    batch_max: usize,
) {
    let mut session = Some(session);
    // Units that met a conflict in the last batch go first in the next.
    let mut again: Vec<PgJob> = Vec::new();
    loop {
        let mut jobs = std::mem::take(&mut again);
        if jobs.is_empty() {
            match rx.recv() {
                Ok(first) => jobs.push(first),
                Err(_) => break,
            }
        }
        while jobs.len() < batch_max {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if session.as_ref().is_none_or(|s| s.client.is_closed()) {
            session = reconnect.0.connect(NoTls).ok().and_then(|mut client| {
                client
                    .batch_execute(&format!("SET search_path TO {}", reconnect.1))
                    .ok()?;
                Some(Session {
                    client,
                    cache: StatementCache::default(),
                })
            });
        }
        let Some(Session { client, cache }) = session.as_mut() else {
            for job in jobs {
                finish_unrun(job, "the database cannot be reached".to_string());
            }
            continue;
        };
        let tx = match client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
        {
            Ok(tx) => tx,
            Err(e) => {
                tracing::error!(error = %e, "group commit could not begin");
                for job in jobs {
                    finish_unrun(job, format!("cannot begin: {e}"));
                }
                continue;
            }
        };
        let conn = Connection::pg(tx, cache, true);
        if let Err(e) = conn.execute_batch(BATCH_TURN) {
            tracing::error!(error = %e, "group commit could not take its turn");
            let _ = conn.finish_pg(false);
            for job in jobs {
                finish_unrun(job, format!("cannot take the batch turn: {e}"));
            }
            continue;
        }
        let mut completers: Vec<Completer> = Vec::with_capacity(jobs.len());
        for job in jobs {
            match job(Some(&conn)) {
                JobRun::Done(c) => completers.push(c),
                JobRun::Again(j) => again.push(j),
            }
        }
        let commit = conn.finish_pg(true).map_err(|e| {
            tracing::error!(error = %e, "group commit failed");
            match &e {
                crate::sql::Error::Postgres(pg) if pg.is_closed() => COMMIT_UNKNOWN.to_string(),
                _ => format!("commit failed: {e}"),
            }
        });
        for c in completers {
            c(commit.clone());
        }
    }
    drop_off_runtime(session.into_iter().collect());
}

/// Tells the caller of a unit that never got a transaction why.
fn finish_unrun(job: PgJob, why: String) {
    if let JobRun::Done(c) = job(None) {
        c(Err(why));
    }
}

/// A short random wait before a re-run, growing with the run number (at most ≈ 50 ms), so
/// that units that collided do not collide again in lockstep.
fn backoff(run: u32) -> Duration {
    let ceiling_us = (500u64 << run.min(7)).min(50_000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    Duration::from_micros(nanos % ceiling_us.max(1))
}

fn metrics_retry(code: &'static str) {
    tracing::debug!(sqlstate = code, "re-running a unit of work");
    RERUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

static RERUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Units re-run by this process since it started (all pools).
pub fn reruns() -> u64 {
    RERUNS.load(std::sync::atomic::Ordering::Relaxed)
}
