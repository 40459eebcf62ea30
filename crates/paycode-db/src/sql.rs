//! One SQL surface over both engines.
//!
//! The storage layers of the acquirer and the wallet write their statements once, in the SQL
//! both SQLite and PostgreSQL accept (see ARCHITECTURE.md for the subset), with numbered
//! placeholders `?1, ?2, …`, and run them through [`Connection`]. Its API is the small part of
//! rusqlite's that the stores use (`execute`, `query_row`, `prepare_cached`, `query_map`,
//! `params!`, [`OptionalExtension`]), so a statement reads the same whichever engine runs it.
//!
//! Values cross the boundary as SQLite's five storage classes ([`types::ValueRef`]): integers,
//! reals, text, blobs and NULL. On PostgreSQL a parameter is encoded as whatever type the
//! server inferred for it (`bigint`, `integer`, `boolean`, `text`, `bytea`, `double
//! precision`), and a column is decoded from its type into the same classes; an integral
//! `numeric` (what `SUM` of a `bigint` gives) reads as an integer.

use postgres::types::{FromSql as PgFromSql, IsNull, ToSql as PgToSql, Type as PgType};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

pub mod types {
    //! Values as both engines see them.

    /// The storage class of a value.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Type {
        Null,
        Integer,
        Real,
        Text,
        Blob,
    }

    impl std::fmt::Display for Type {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(match self {
                Type::Null => "NULL",
                Type::Integer => "INTEGER",
                Type::Real => "REAL",
                Type::Text => "TEXT",
                Type::Blob => "BLOB",
            })
        }
    }

    /// A borrowed value of a row or a parameter.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub enum ValueRef<'a> {
        Null,
        Integer(i64),
        Real(f64),
        Text(&'a str),
        Blob(&'a [u8]),
    }

    impl<'a> ValueRef<'a> {
        pub fn data_type(&self) -> Type {
            match self {
                ValueRef::Null => Type::Null,
                ValueRef::Integer(_) => Type::Integer,
                ValueRef::Real(_) => Type::Real,
                ValueRef::Text(_) => Type::Text,
                ValueRef::Blob(_) => Type::Blob,
            }
        }

        pub fn as_str(&self) -> FromSqlResult<&'a str> {
            match *self {
                ValueRef::Text(t) => Ok(t),
                _ => Err(FromSqlError::InvalidType),
            }
        }

        pub fn as_i64(&self) -> FromSqlResult<i64> {
            match *self {
                ValueRef::Integer(i) => Ok(i),
                _ => Err(FromSqlError::InvalidType),
            }
        }

        pub fn as_blob(&self) -> FromSqlResult<&'a [u8]> {
            match *self {
                ValueRef::Blob(b) => Ok(b),
                _ => Err(FromSqlError::InvalidType),
            }
        }
    }

    /// An owned value.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Null,
        Integer(i64),
        Real(f64),
        Text(String),
        Blob(Vec<u8>),
    }

    impl Value {
        pub fn as_ref(&self) -> ValueRef<'_> {
            match self {
                Value::Null => ValueRef::Null,
                Value::Integer(i) => ValueRef::Integer(*i),
                Value::Real(r) => ValueRef::Real(*r),
                Value::Text(t) => ValueRef::Text(t),
                Value::Blob(b) => ValueRef::Blob(b),
            }
        }
    }

    /// What a parameter gives to a statement.
    #[derive(Debug, Clone, PartialEq)]
    pub enum ToSqlOutput<'a> {
        Borrowed(ValueRef<'a>),
        Owned(Value),
    }

    impl ToSqlOutput<'_> {
        pub fn value(&self) -> ValueRef<'_> {
            match self {
                ToSqlOutput::Borrowed(v) => *v,
                ToSqlOutput::Owned(v) => v.as_ref(),
            }
        }
    }

    impl<'a> From<&'a str> for ToSqlOutput<'a> {
        fn from(s: &'a str) -> Self {
            ToSqlOutput::Borrowed(ValueRef::Text(s))
        }
    }

    impl From<String> for ToSqlOutput<'_> {
        fn from(s: String) -> Self {
            ToSqlOutput::Owned(Value::Text(s))
        }
    }

    impl From<i64> for ToSqlOutput<'_> {
        fn from(i: i64) -> Self {
            ToSqlOutput::Owned(Value::Integer(i))
        }
    }

    /// Why a value could not be read as a type.
    #[derive(Debug)]
    pub enum FromSqlError {
        InvalidType,
        OutOfRange(i64),
        Other(Box<dyn std::error::Error + Send + Sync>),
    }

    impl std::fmt::Display for FromSqlError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                FromSqlError::InvalidType => f.write_str("invalid type"),
                FromSqlError::OutOfRange(i) => write!(f, "value {i} out of range"),
                FromSqlError::Other(e) => write!(f, "{e}"),
            }
        }
    }

    impl std::error::Error for FromSqlError {}

    pub type FromSqlResult<T> = Result<T, FromSqlError>;

    /// A type a column can be read as.
    pub trait FromSql: Sized {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self>;
    }

    /// A type a parameter can be given as.
    pub trait ToSql {
        fn to_sql(&self) -> super::Result<ToSqlOutput<'_>>;
    }

    impl FromSql for i64 {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<i64> {
            value.as_i64()
        }
    }

    macro_rules! narrow_int {
        ($($t:ty),*) => {$(
            impl FromSql for $t {
                fn column_result(value: ValueRef<'_>) -> FromSqlResult<$t> {
                    let i = value.as_i64()?;
                    <$t>::try_from(i).map_err(|_| FromSqlError::OutOfRange(i))
                }
            }
            impl ToSql for $t {
                fn to_sql(&self) -> super::Result<ToSqlOutput<'_>> {
                    let i = i64::try_from(*self).map_err(|e| {
                        super::Error::ToSqlConversionFailure(Box::new(e))
                    })?;
                    Ok(ToSqlOutput::Owned(Value::Integer(i)))
                }
            }
        )*};
    }
    narrow_int!(i32, u32, u64, usize, u16, u8);

    impl FromSql for bool {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<bool> {
            Ok(value.as_i64()? != 0)
        }
    }

    impl FromSql for f64 {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<f64> {
            match value {
                ValueRef::Real(r) => Ok(r),
                ValueRef::Integer(i) => Ok(i as f64),
                _ => Err(FromSqlError::InvalidType),
            }
        }
    }

    impl FromSql for String {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<String> {
            value.as_str().map(str::to_string)
        }
    }

    impl FromSql for Vec<u8> {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<Vec<u8>> {
            value.as_blob().map(<[u8]>::to_vec)
        }
    }

    impl<const N: usize> FromSql for [u8; N] {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<[u8; N]> {
            let b = value.as_blob()?;
            <[u8; N]>::try_from(b).map_err(|_| {
                FromSqlError::Other(format!("a blob of {} bytes, not {N}", b.len()).into())
            })
        }
    }

    impl<T: FromSql> FromSql for Option<T> {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<Option<T>> {
            match value {
                ValueRef::Null => Ok(None),
                v => T::column_result(v).map(Some),
            }
        }
    }

    impl ToSql for i64 {
        fn to_sql(&self) -> super::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::Owned(Value::Integer(*self)))
        }
    }

    impl ToSql for bool {
        fn to_sql(&self) -> super::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::Owned(Value::Integer(i64::from(*self))))
        }
    }

    impl ToSql for f64 {
        fn to_sql(&self) -> super::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::Owned(Value::Real(*self)))
        }
    }

    impl ToSql for str {
        fn to_sql(&self) -> super::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::Borrowed(ValueRef::Text(self)))
        }
    }

    impl ToSql for String {
        fn to_sql(&self) -> super::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::Borrowed(ValueRef::Text(self)))
        }
    }

    impl ToSql for [u8] {
        fn to_sql(&self) -> super::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::Borrowed(ValueRef::Blob(self)))
        }
    }

    impl ToSql for Vec<u8> {
        fn to_sql(&self) -> super::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::Borrowed(ValueRef::Blob(self)))
        }
    }

    impl<const N: usize> ToSql for [u8; N] {
        fn to_sql(&self) -> super::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::Borrowed(ValueRef::Blob(self)))
        }
    }

    impl<T: ToSql> ToSql for Option<T> {
        fn to_sql(&self) -> super::Result<ToSqlOutput<'_>> {
            match self {
                None => Ok(ToSqlOutput::Borrowed(ValueRef::Null)),
                Some(v) => v.to_sql(),
            }
        }
    }

    impl<T: ToSql + ?Sized> ToSql for &T {
        fn to_sql(&self) -> super::Result<ToSqlOutput<'_>> {
            (**self).to_sql()
        }
    }

    impl ToSql for ToSqlOutput<'_> {
        fn to_sql(&self) -> super::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::Borrowed(self.value()))
        }
    }
}

use types::{FromSql, FromSqlError, ToSql, ToSqlOutput, Type, ValueRef};

/// A failed statement of either engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("query returned no rows")]
    QueryReturnedNoRows,
    #[error("cannot read column {0} ({1}): {2}")]
    FromSqlConversionFailure(usize, Type, Box<dyn std::error::Error + Send + Sync>),
    #[error("column {0} ({1}) holds a {2}")]
    InvalidColumnType(usize, String, Type),
    #[error("cannot give a parameter: {0}")]
    ToSqlConversionFailure(Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Postgres(#[from] postgres::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `query_row(…).optional()`: no row is `None`, not an error.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::QueryReturnedNoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The parameters of a statement: `params![…]`, an array or a tuple.
pub trait Params {
    fn outputs(&self) -> Result<Vec<ToSqlOutput<'_>>>;
}

impl Params for &[&dyn ToSql] {
    fn outputs(&self) -> Result<Vec<ToSqlOutput<'_>>> {
        self.iter().map(|p| p.to_sql()).collect()
    }
}

/// `[]`: no parameters (one impl of length zero, so that `[]` needs no annotation).
impl Params for [&(dyn ToSql + Send + Sync); 0] {
    fn outputs(&self) -> Result<Vec<ToSqlOutput<'_>>> {
        Ok(Vec::new())
    }
}

macro_rules! array_params {
    ($($n:literal)*) => {$(
        impl<T: ToSql> Params for [T; $n] {
            fn outputs(&self) -> Result<Vec<ToSqlOutput<'_>>> {
                self.iter().map(|p| p.to_sql()).collect()
            }
        }
    )*};
}
array_params!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);

impl Params for () {
    fn outputs(&self) -> Result<Vec<ToSqlOutput<'_>>> {
        Ok(Vec::new())
    }
}

macro_rules! tuple_params {
    ($($name:ident $idx:tt),+) => {
        impl<$($name: ToSql),+> Params for ($($name,)+) {
            fn outputs(&self) -> Result<Vec<ToSqlOutput<'_>>> {
                Ok(vec![$(self.$idx.to_sql()?),+])
            }
        }
    };
}
tuple_params!(A 0);
tuple_params!(A 0, B 1);
tuple_params!(A 0, B 1, C 2);
tuple_params!(A 0, B 1, C 2, D 3);
tuple_params!(A 0, B 1, C 2, D 3, E 4);
tuple_params!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_params!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_params!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

/// `params![a, b, …]`: parameters of different types.
#[macro_export]
macro_rules! params {
    () => { &[] as &[&dyn $crate::sql::types::ToSql] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::sql::types::ToSql),+] as &[&dyn $crate::sql::types::ToSql] };
}
pub use crate::params;

/// The engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// Prepared statements of one PostgreSQL session, by SQL text.
#[derive(Default)]
pub(crate) struct StatementCache {
    statements: HashMap<String, postgres::Statement>,
}

/// Most statements a session keeps prepared (dynamic filters could otherwise grow it forever).
const STATEMENT_CACHE_MAX: usize = 512;

/// A PostgreSQL transaction as a [`Connection`] runs statements in it.
pub(crate) struct PgTx<'a> {
    tx: RefCell<postgres::Transaction<'a>>,
    cache: RefCell<&'a mut StatementCache>,
    /// A write unit: rows read to decide a write are locked (`FOR UPDATE`).
    write: bool,
    /// The SQLSTATE of the first statement that failed in this transaction, if any: once one
    /// fails, PostgreSQL refuses the rest, and the engine decides from it whether to re-run.
    failed: Cell<Option<&'static str>>,
}

enum Kind<'a> {
    Sqlite(&'a rusqlite::Connection),
    SqliteOwned(rusqlite::Connection),
    Pg(PgTx<'a>),
}

/// A connection inside one unit of work (a transaction on PostgreSQL; a savepoint of the
/// group-commit transaction or a read snapshot on SQLite).
pub struct Connection<'a> {
    kind: Kind<'a>,
}

impl<'a> Connection<'a> {
    /// Wraps a SQLite connection (the engine's writer or a reader).
    pub fn sqlite(conn: &'a rusqlite::Connection) -> Connection<'a> {
        Connection {
            kind: Kind::Sqlite(conn),
        }
    }

    pub(crate) fn pg(
        tx: postgres::Transaction<'a>,
        cache: &'a mut StatementCache,
        write: bool,
    ) -> Connection<'a> {
        Connection {
            kind: Kind::Pg(PgTx {
                tx: RefCell::new(tx),
                cache: RefCell::new(cache),
                write,
                failed: Cell::new(None),
            }),
        }
    }

    /// Ends a PostgreSQL unit: commits if `commit`, else rolls back.
    pub(crate) fn finish_pg(self, commit: bool) -> Result<()> {
        match self.kind {
            Kind::Pg(p) => {
                let tx = p.tx.into_inner();
                if commit {
                    tx.commit()?;
                } else {
                    tx.rollback()?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The SQLSTATE of the statement that failed in this PostgreSQL transaction.
    pub(crate) fn pg_failure(&self) -> Option<&'static str> {
        match &self.kind {
            Kind::Pg(p) => p.failed.get(),
            _ => None,
        }
    }

    /// Forgets the failed statement, after the transaction was rolled back to a savepoint
    /// taken before it (the transaction is usable again).
    pub(crate) fn clear_pg_failure(&self) {
        if let Kind::Pg(p) = &self.kind {
            p.failed.set(None);
        }
    }
}

impl Connection<'static> {
    /// A private in-memory SQLite database (tests and tools).
    pub fn open_in_memory() -> Result<Connection<'static>> {
        Ok(Connection {
            kind: Kind::SqliteOwned(rusqlite::Connection::open_in_memory()?),
        })
    }
}

impl Connection<'_> {
    pub fn engine(&self) -> Engine {
        match self.kind {
            Kind::Pg(_) => Engine::Postgres,
            _ => Engine::Sqlite,
        }
    }

    fn sqlite_conn(&self) -> Option<&rusqlite::Connection> {
        match &self.kind {
            Kind::Sqlite(c) => Some(c),
            Kind::SqliteOwned(c) => Some(c),
            Kind::Pg(_) => None,
        }
    }

    /// `" FOR UPDATE"` in a PostgreSQL write unit, else nothing: appended to the reads a write
    /// decides on (a payment's state, a user's limits), so that two units deciding on the same
    /// row take turns. SQLite's single writer already runs write units one at a time.
    pub fn for_update(&self) -> &'static str {
        match &self.kind {
            Kind::Pg(p) if p.write => " FOR UPDATE",
            _ => "",
        }
    }

    /// `" FOR UPDATE SKIP LOCKED"` in a PostgreSQL write unit, else nothing: for claiming
    /// background work, so that two processes never take the same item.
    pub fn skip_locked(&self) -> &'static str {
        match &self.kind {
            Kind::Pg(p) if p.write => " FOR UPDATE SKIP LOCKED",
            _ => "",
        }
    }

    /// Runs several statements without parameters (schema scripts).
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.kind {
            Kind::Pg(p) => p.run(|tx| tx.batch_execute(sql)),
            _ => Ok(self
                .sqlite_conn()
                .expect("a SQLite kind")
                .execute_batch(sql)?),
        }
    }

    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        self.prepare_cached(sql)
    }

    /// A statement, prepared once per connection and kept.
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        match &self.kind {
            Kind::Pg(p) => {
                let statement = PgTx::statement(p, sql)?;
                Ok(Statement {
                    inner: StatementKind::Pg { tx: p, statement },
                })
            }
            _ => {
                let c = self.sqlite_conn().expect("a SQLite kind");
                Ok(Statement {
                    inner: StatementKind::Sqlite(c.prepare_cached(sql)?),
                })
            }
        }
    }

    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    pub fn query_row<T, P, F>(&self, sql: &str, params: P, f: F) -> Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    /// Every row of a query, mapped.
    pub fn query_all_cached<T, P, F>(&self, sql: &str, params: P, f: F) -> Result<Vec<T>>
    where
        P: Params,
        F: FnMut(&Row<'_>) -> Result<T>,
    {
        self.prepare_cached(sql)?.query_map(params, f)?.collect()
    }

    /// Runs `f` with every read in it seeing one snapshot. PostgreSQL units already run in one
    /// transaction; a SQLite reader opens a read transaction around `f`.
    pub fn snapshot<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&Connection<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        match self.sqlite_conn() {
            Some(c) if c.is_autocommit() => {
                let tx = c.unchecked_transaction().map_err(Error::from)?;
                let out = f(&Connection::sqlite(&tx));
                drop(tx);
                out
            }
            _ => f(self),
        }
    }
}

/// What a statement does on a PostgreSQL transaction (a trait object, so that statements and
/// rows need not name the transaction's lifetime).
trait PgOps {
    fn execute(&self, st: &postgres::Statement, params: &[&(dyn PgToSql + Sync)]) -> Result<u64>;
    fn bind(
        &self,
        st: &postgres::Statement,
        params: &[&(dyn PgToSql + Sync)],
    ) -> Result<postgres::Portal>;
    fn fetch(&self, portal: &postgres::Portal, n: i32) -> Result<Vec<postgres::Row>>;
    fn query_all(
        &self,
        st: &postgres::Statement,
        params: &[&(dyn PgToSql + Sync)],
    ) -> Result<Vec<postgres::Row>>;
}

impl PgOps for PgTx<'_> {
    fn execute(&self, st: &postgres::Statement, params: &[&(dyn PgToSql + Sync)]) -> Result<u64> {
        self.run(|t| t.execute(st, params))
    }

    fn bind(
        &self,
        st: &postgres::Statement,
        params: &[&(dyn PgToSql + Sync)],
    ) -> Result<postgres::Portal> {
        self.run(|t| t.bind(st, params))
    }

    fn fetch(&self, portal: &postgres::Portal, n: i32) -> Result<Vec<postgres::Row>> {
        self.run(|t| t.query_portal(portal, n))
    }

    fn query_all(
        &self,
        st: &postgres::Statement,
        params: &[&(dyn PgToSql + Sync)],
    ) -> Result<Vec<postgres::Row>> {
        self.run(|t| t.query(st, params))
    }
}

impl<'a> PgTx<'a> {
    /// Runs a call on the transaction, remembering the SQLSTATE of a failure.
    fn run<T>(
        &self,
        call: impl FnOnce(&mut postgres::Transaction<'a>) -> Result<T, postgres::Error>,
    ) -> Result<T> {
        let mut tx = self.tx.borrow_mut();
        call(&mut tx).map_err(|e| {
            if self.failed.get().is_none() {
                self.failed.set(Some(sqlstate_of(&e)));
            }
            Error::Postgres(e)
        })
    }

    fn statement(&self, sql: &str) -> Result<postgres::Statement> {
        if let Some(s) = self.cache.borrow().statements.get(sql) {
            return Ok(s.clone());
        }
        let text = pg_sql(sql);
        let statement = self.run(|tx| tx.prepare(&text))?;
        let mut cache = self.cache.borrow_mut();
        if cache.statements.len() >= STATEMENT_CACHE_MAX {
            cache.statements.clear();
        }
        cache.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

/// The SQLSTATE of a PostgreSQL error; a lost connection is `08006`.
pub(crate) fn sqlstate_of(e: &postgres::Error) -> &'static str {
    use postgres::error::SqlState;
    match e.code() {
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE => "40001",
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED => "40P01",
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => "23505",
        Some(_) => "other",
        None if e.is_closed() => "08006",
        None => "other",
    }
}

/// SQLite's `?N` placeholders as PostgreSQL's `$N` (outside quoted text).
pub fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut in_quote = false;
    let mut next_bare = 1;
    let mut chars = sql.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\'' => {
                in_quote = !in_quote;
                out.push(ch);
            }
            '?' if !in_quote => {
                out.push('$');
                if chars.peek().is_some_and(|c| c.is_ascii_digit()) {
                    while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                        out.push(d);
                        chars.next();
                    }
                } else {
                    out.push_str(&next_bare.to_string());
                    next_bare += 1;
                }
            }
            _ => out.push(ch),
        }
    }
    out
}

enum StatementKind<'c> {
    Sqlite(rusqlite::CachedStatement<'c>),
    Pg {
        tx: &'c dyn PgOps,
        statement: postgres::Statement,
    },
}

/// A prepared statement.
pub struct Statement<'c> {
    inner: StatementKind<'c>,
}

/// A parameter as SQLite binds it.
struct SqliteBind<'a>(ValueRef<'a>);

impl rusqlite::ToSql for SqliteBind<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput as O, ValueRef as V};
        Ok(O::Borrowed(match self.0 {
            ValueRef::Null => V::Null,
            ValueRef::Integer(i) => V::Integer(i),
            ValueRef::Real(r) => V::Real(r),
            ValueRef::Text(t) => V::Text(t.as_bytes()),
            ValueRef::Blob(b) => V::Blob(b),
        }))
    }
}

/// A parameter as PostgreSQL binds it: encoded as the type the server inferred.
#[derive(Debug)]
struct PgBind<'a>(ValueRef<'a>);

impl PgToSql for PgBind<'_> {
    fn to_sql(
        &self,
        ty: &PgType,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let mismatch = || -> Box<dyn std::error::Error + Sync + Send> {
            format!("a {} parameter given for a {ty} column", self.0.data_type()).into()
        };
        match (self.0, ty) {
            (ValueRef::Null, _) => Ok(IsNull::Yes),
            (ValueRef::Integer(i), &PgType::INT8) => PgToSql::to_sql(&i, ty, out),
            (ValueRef::Integer(i), &PgType::INT4) => PgToSql::to_sql(&i32::try_from(i)?, ty, out),
            (ValueRef::Integer(i), &PgType::INT2) => PgToSql::to_sql(&i16::try_from(i)?, ty, out),
            (ValueRef::Integer(i), &PgType::BOOL) => PgToSql::to_sql(&(i != 0), ty, out),
            (ValueRef::Integer(i), &PgType::FLOAT8) => PgToSql::to_sql(&(i as f64), ty, out),
            (ValueRef::Integer(i), &PgType::TEXT | &PgType::VARCHAR) => {
                PgToSql::to_sql(&i.to_string().as_str(), ty, out)
            }
            (ValueRef::Real(r), &PgType::FLOAT8) => PgToSql::to_sql(&r, ty, out),
            (ValueRef::Real(r), &PgType::FLOAT4) => PgToSql::to_sql(&(r as f32), ty, out),
            (
                ValueRef::Text(t),
                &PgType::TEXT | &PgType::VARCHAR | &PgType::BPCHAR | &PgType::NAME,
            ) => PgToSql::to_sql(&t, ty, out),
            (ValueRef::Blob(b), &PgType::BYTEA) => PgToSql::to_sql(&b, ty, out),
            _ => Err(mismatch()),
        }
    }

    fn accepts(_: &PgType) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// An integral `numeric` (PostgreSQL's `SUM` of `bigint`), read as an `i64`.
struct NumericInt(i64);

impl<'a> PgFromSql<'a> for NumericInt {
    fn from_sql(
        _: &PgType,
        raw: &'a [u8],
    ) -> std::result::Result<NumericInt, Box<dyn std::error::Error + Sync + Send>> {
        // Binary numeric: ndigits, weight, sign, dscale (i16 each), then base-10000 digits.
        let word =
            |i: usize| -> std::result::Result<i16, Box<dyn std::error::Error + Sync + Send>> {
                let b = raw.get(i * 2..i * 2 + 2).ok_or("a truncated numeric")?;
                Ok(i16::from_be_bytes([b[0], b[1]]))
            };
        let ndigits = usize::try_from(word(0)?)?;
        let weight = i32::from(word(1)?);
        let sign = word(2)? as u16;
        let mut value: i128 = 0;
        for k in 0..ndigits {
            let digit = i128::from(word(4 + k)?);
            let power = weight - k as i32;
            if power < 0 {
                if digit != 0 {
                    return Err("a numeric with a fraction where an integer was expected".into());
                }
                continue;
            }
            value += digit * 10_000i128.pow(power as u32);
        }
        let value = match sign {
            0x0000 => value,
            0x4000 => -value,
            _ => return Err("a numeric that is not a number".into()),
        };
        Ok(NumericInt(i64::try_from(value)?))
    }

    fn accepts(ty: &PgType) -> bool {
        *ty == PgType::NUMERIC
    }
}

enum RowKind<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Pg(&'a postgres::Row),
}

/// A row of a result.
pub struct Row<'a> {
    inner: RowKind<'a>,
}

/// A column index.
pub trait RowIndex {
    fn idx(&self) -> usize;
}

impl RowIndex for usize {
    fn idx(&self) -> usize {
        *self
    }
}

impl Row<'_> {
    pub fn get<I: RowIndex, T: FromSql>(&self, idx: I) -> Result<T> {
        let i = idx.idx();
        match &self.inner {
            RowKind::Sqlite(r) => {
                use rusqlite::types::ValueRef as V;
                let v = match r.get_ref(i)? {
                    V::Null => ValueRef::Null,
                    V::Integer(n) => ValueRef::Integer(n),
                    V::Real(x) => ValueRef::Real(x),
                    V::Text(t) => ValueRef::Text(std::str::from_utf8(t).map_err(|e| {
                        Error::FromSqlConversionFailure(i, Type::Text, Box::new(e))
                    })?),
                    V::Blob(b) => ValueRef::Blob(b),
                };
                convert(i, v)
            }
            RowKind::Pg(r) => convert(i, pg_value(r, i)?),
        }
    }
}

fn convert<T: FromSql>(i: usize, v: ValueRef<'_>) -> Result<T> {
    T::column_result(v).map_err(|e| match e {
        FromSqlError::InvalidType => {
            Error::InvalidColumnType(i, format!("column {i}"), v.data_type())
        }
        FromSqlError::OutOfRange(n) => Error::FromSqlConversionFailure(
            i,
            Type::Integer,
            format!("value {n} out of range").into(),
        ),
        FromSqlError::Other(why) => Error::FromSqlConversionFailure(i, v.data_type(), why),
    })
}

/// Column `i` of a PostgreSQL row as one of the five storage classes.
fn pg_value(r: &postgres::Row, i: usize) -> Result<ValueRef<'_>> {
    let column = r
        .columns()
        .get(i)
        .ok_or_else(|| Error::InvalidColumnType(i, format!("column {i}"), Type::Null))?;
    let ty = column.type_().clone();
    let v = match ty {
        PgType::INT8 => r.try_get::<_, Option<i64>>(i)?.map(ValueRef::Integer),
        PgType::INT4 => r
            .try_get::<_, Option<i32>>(i)?
            .map(|n| ValueRef::Integer(n.into())),
        PgType::INT2 => r
            .try_get::<_, Option<i16>>(i)?
            .map(|n| ValueRef::Integer(n.into())),
        PgType::BOOL => r
            .try_get::<_, Option<bool>>(i)?
            .map(|b| ValueRef::Integer(b.into())),
        PgType::NUMERIC => r
            .try_get::<_, Option<NumericInt>>(i)?
            .map(|n| ValueRef::Integer(n.0)),
        PgType::FLOAT8 => r.try_get::<_, Option<f64>>(i)?.map(ValueRef::Real),
        PgType::FLOAT4 => r
            .try_get::<_, Option<f32>>(i)?
            .map(|x| ValueRef::Real(x.into())),
        PgType::TEXT | PgType::VARCHAR | PgType::BPCHAR | PgType::NAME => {
            r.try_get::<_, Option<&str>>(i)?.map(ValueRef::Text)
        }
        PgType::BYTEA => r.try_get::<_, Option<&[u8]>>(i)?.map(ValueRef::Blob),
        other => {
            return Err(Error::InvalidColumnType(
                i,
                format!("{} of type {other}", column.name()),
                Type::Null,
            ));
        }
    };
    Ok(v.unwrap_or(ValueRef::Null))
}

/// The parameters as SQLite binds them.
fn sqlite_params<'a>(
    outputs: &'a [ToSqlOutput<'_>],
) -> rusqlite::ParamsFromIter<impl Iterator<Item = SqliteBind<'a>>> {
    rusqlite::params_from_iter(outputs.iter().map(|o| SqliteBind(o.value())))
}

/// Runs `call` with the parameters as PostgreSQL binds them.
fn with_pg_params<T>(
    outputs: &[ToSqlOutput<'_>],
    call: impl FnOnce(&[&(dyn PgToSql + Sync)]) -> T,
) -> T {
    let binds: Vec<PgBind<'_>> = outputs.iter().map(|o| PgBind(o.value())).collect();
    let refs: Vec<&(dyn PgToSql + Sync)> =
        binds.iter().map(|b| b as &(dyn PgToSql + Sync)).collect();
    call(&refs)
}

impl<'c> Statement<'c> {
    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        let outputs = params.outputs()?;
        match &mut self.inner {
            StatementKind::Sqlite(s) => Ok(s.execute(sqlite_params(&outputs))?),
            StatementKind::Pg { tx, statement } => {
                let n = with_pg_params(&outputs, |refs| tx.execute(statement, refs))?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }
    }

    pub fn query_row<T, P, F>(&mut self, params: P, f: F) -> Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        let mut rows = self.query_buffered(params)?;
        match rows.next()? {
            Some(r) => f(&r),
            None => Err(Error::QueryReturnedNoRows),
        }
    }

    /// The rows of a query, each mapped by `f`.
    pub fn query_map<T, P, F>(&mut self, params: P, f: F) -> Result<MappedRows<'_, F>>
    where
        P: Params,
        F: FnMut(&Row<'_>) -> Result<T>,
    {
        Ok(MappedRows {
            rows: self.query_buffered(params)?,
            f,
        })
    }

    /// The rows of a query in one round trip (PostgreSQL fetches them all at once): for the
    /// point reads and short lists of units of work. [`Statement::query`] streams instead.
    fn query_buffered<P: Params>(&mut self, params: P) -> Result<Rows<'_>> {
        let outputs = params.outputs()?;
        match &mut self.inner {
            StatementKind::Pg { tx, statement } => {
                let rows = with_pg_params(&outputs, |refs| tx.query_all(statement, refs))?;
                Ok(Rows {
                    inner: RowsKind::PgBuffered {
                        page: rows.into(),
                        current: None,
                    },
                })
            }
            StatementKind::Sqlite(_) => {
                drop(outputs);
                self.query(params)
            }
        }
    }

    /// The rows of a query, one at a time. PostgreSQL fetches them through a portal in pages,
    /// so a pass over a large table holds one page in memory.
    pub fn query<P: Params>(&mut self, params: P) -> Result<Rows<'_>> {
        let outputs = params.outputs()?;
        match &mut self.inner {
            StatementKind::Sqlite(s) => {
                let rows = s.query(sqlite_params(&outputs))?;
                Ok(Rows {
                    inner: RowsKind::Sqlite(rows),
                })
            }
            StatementKind::Pg { tx, statement } => {
                let portal = with_pg_params(&outputs, |refs| tx.bind(statement, refs))?;
                Ok(Rows {
                    inner: RowsKind::Pg {
                        tx: *tx,
                        portal,
                        page: std::collections::VecDeque::new(),
                        current: None,
                        done: false,
                    },
                })
            }
        }
    }
}

/// Rows fetched per round trip by a PostgreSQL portal.
const PG_PAGE_ROWS: i32 = 1_000;

enum RowsKind<'s> {
    Sqlite(rusqlite::Rows<'s>),
    PgBuffered {
        page: std::collections::VecDeque<postgres::Row>,
        current: Option<postgres::Row>,
    },
    Pg {
        tx: &'s dyn PgOps,
        portal: postgres::Portal,
        page: std::collections::VecDeque<postgres::Row>,
        current: Option<postgres::Row>,
        done: bool,
    },
}

/// The rows of a query.
pub struct Rows<'s> {
    inner: RowsKind<'s>,
}

impl Rows<'_> {
    /// The next row (rusqlite's spelling: a lending iterator, so not `Iterator`).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Row<'_>>> {
        match &mut self.inner {
            RowsKind::Sqlite(rows) => Ok(rows.next()?.map(|r| Row {
                inner: RowKind::Sqlite(r),
            })),
            RowsKind::PgBuffered { page, current } => {
                *current = page.pop_front();
                Ok(current.as_ref().map(|r| Row {
                    inner: RowKind::Pg(r),
                }))
            }
            RowsKind::Pg {
                tx,
                portal,
                page,
                current,
                done,
            } => {
                if page.is_empty() && !*done {
                    let fetched = tx.fetch(portal, PG_PAGE_ROWS)?;
                    if fetched.len() < PG_PAGE_ROWS as usize {
                        *done = true;
                    }
                    page.extend(fetched);
                }
                *current = page.pop_front();
                Ok(current.as_ref().map(|r| Row {
                    inner: RowKind::Pg(r),
                }))
            }
        }
    }
}

/// The rows of a query, mapped.
pub struct MappedRows<'s, F> {
    rows: Rows<'s>,
    f: F,
}

impl<T, F> Iterator for MappedRows<'_, F>
where
    F: FnMut(&Row<'_>) -> Result<T>,
{
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        match self.rows.next() {
            Ok(Some(r)) => Some((self.f)(&r)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres_outside_quotes() {
        assert_eq!(
            pg_sql("SELECT a FROM t WHERE b = ?1 AND c = '?' AND d IN (?2, ?10)"),
            "SELECT a FROM t WHERE b = $1 AND c = '?' AND d IN ($2, $10)"
        );
        assert_eq!(pg_sql("VALUES (?, ?)"), "VALUES ($1, $2)");
    }

    #[test]
    fn sqlite_values_round_trip_through_the_facade() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (i INTEGER, s TEXT, b BLOB, n INTEGER)")
            .unwrap();
        let blob = [1u8, 2, 3];
        c.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4)",
            params![7i64, "x", &blob[..], None::<i64>],
        )
        .unwrap();
        let (i, s, b, n): (i64, String, Vec<u8>, Option<i64>) = c
            .query_row("SELECT i, s, b, n FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        assert_eq!((i, s.as_str(), b.as_slice(), n), (7, "x", &blob[..], None));
        let missing = c
            .query_row("SELECT i FROM t WHERE i = ?1", [8i64], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .unwrap();
        assert_eq!(missing, None);
        match c.query_row("SELECT s FROM t", [], |r| r.get::<_, i64>(0)) {
            Err(Error::InvalidColumnType(0, _, Type::Text)) => {}
            other => panic!("{other:?}"),
        }
    }
}
