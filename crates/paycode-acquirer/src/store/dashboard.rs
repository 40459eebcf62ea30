//! The dashboard's tables (users and sign-in sessions) and its read queries: the payment
//! search with keyset pagination and the overview's aggregates. Every query is bounded by an
//! index range and a limit; none reads the whole `payments` table.

use super::payments::{PAYMENT_COLUMNS, payment_from_row};
use super::{PaymentRow, StoreResult};
use paycode_db::sql::types::ToSql;
use paycode_db::sql::{Connection, OptionalExtension, params};

pub const DASHBOARD_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS dashboard_users (
    name                  TEXT PRIMARY KEY,
    password_hash         TEXT NOT NULL,          -- Argon2id, PHC string
    role                  TEXT NOT NULL,          -- OPERATOR | MERCHANT
    client_id             TEXT,                   -- MERCHANT: whose merchants it sees
    reference_merchant_id TEXT,                   -- MERCHANT: one merchant, or every one of the client (ISV, SI)
    created_ms            INTEGER NOT NULL,
    disabled_ms           INTEGER
);
CREATE TABLE IF NOT EXISTS dashboard_sessions (
    session_hash          TEXT PRIMARY KEY,       -- hex SHA-256 of the cookie's secret
    user_name             TEXT NOT NULL,
    role                  TEXT NOT NULL,
    client_id             TEXT,
    reference_merchant_id TEXT,
    csrf                  TEXT NOT NULL,
    created_ms            INTEGER NOT NULL,
    expires_ms            INTEGER NOT NULL,
    ended_ms              INTEGER
);
CREATE INDEX IF NOT EXISTS dashboard_sessions_expiry ON dashboard_sessions (expires_ms);
-- The payment search: each filter with its time order, and the code's last four digits.
ALTER TABLE payments ADD COLUMN code_last4 TEXT;
UPDATE payments SET code_last4 = substr(code_masked, length(code_masked) - 3);
CREATE INDEX IF NOT EXISTS payments_last4 ON payments (code_last4, created_ms);
CREATE INDEX IF NOT EXISTS payments_client_created ON payments (client_id, created_ms);
CREATE INDEX IF NOT EXISTS payments_wallet_created ON payments (wallet, created_ms);
CREATE INDEX IF NOT EXISTS payments_status_created ON payments (status, created_ms);
CREATE INDEX IF NOT EXISTS refunds_created ON refunds (created_ms);
"#;

/// Who a dashboard user or session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Operator,
    /// Sees the merchants of `client_id`: one (`Some`) or all of them (an ISV or SI).
    Merchant {
        client_id: String,
        reference_merchant_id: Option<String>,
    },
}

impl Role {
    fn stored(&self) -> (&'static str, Option<&str>, Option<&str>) {
        match self {
            Role::Operator => ("OPERATOR", None, None),
            Role::Merchant {
                client_id,
                reference_merchant_id,
            } => (
                "MERCHANT",
                Some(client_id.as_str()),
                reference_merchant_id.as_deref(),
            ),
        }
    }

    fn from_stored(
        role: &str,
        client_id: Option<String>,
        merchant: Option<String>,
        what: &dyn Fn() -> String,
    ) -> paycode_db::sql::Result<Role> {
        match (role, client_id) {
            ("OPERATOR", _) => Ok(Role::Operator),
            ("MERCHANT", Some(client_id)) => Ok(Role::Merchant {
                client_id,
                reference_merchant_id: merchant,
            }),
            (other, _) => Err(super::corrupt_column(
                2,
                format!(
                    "{}: role {other:?} (or a merchant role without a client)",
                    what()
                ),
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub name: String,
    pub password_hash: String,
    pub role: Role,
    pub created_ms: i64,
    pub disabled_ms: Option<i64>,
}

pub fn upsert_user(c: &Connection, u: &UserRow) -> StoreResult<()> {
    let (role, client, merchant) = u.role.stored();
    c.prepare_cached(
        "INSERT INTO dashboard_users (name, password_hash, role, client_id, reference_merchant_id, \
         created_ms, disabled_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash, \
         role = excluded.role, client_id = excluded.client_id, \
         reference_merchant_id = excluded.reference_merchant_id, disabled_ms = excluded.disabled_ms",
    )?
    .execute(params![
        u.name,
        u.password_hash,
        role,
        client,
        merchant,
        u.created_ms,
        u.disabled_ms
    ])?;
    Ok(())
}

fn user_from_row(r: &paycode_db::sql::Row<'_>) -> paycode_db::sql::Result<UserRow> {
    let name: String = r.get(0)?;
    let role: String = r.get(2)?;
    let role = Role::from_stored(&role, r.get(3)?, r.get(4)?, &|| format!("user {name}"))?;
    Ok(UserRow {
        password_hash: r.get(1)?,
        role,
        created_ms: r.get(5)?,
        disabled_ms: r.get(6)?,
        name,
    })
}

const USER_COLUMNS: &str =
    "name, password_hash, role, client_id, reference_merchant_id, created_ms, disabled_ms";

pub fn user(c: &Connection, name: &str) -> StoreResult<Option<UserRow>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM dashboard_users WHERE name = ?1"
    ))?
    .query_row([name], user_from_row)
    .optional()?)
}

pub fn users(c: &Connection) -> StoreResult<Vec<UserRow>> {
    Ok(c.query_all_cached(
        &format!("SELECT {USER_COLUMNS} FROM dashboard_users ORDER BY name"),
        (),
        user_from_row,
    )?)
}

/// A sign-in: who, what they may see, and the token every form must carry back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub session_hash: String,
    pub user_name: String,
    pub role: Role,
    pub csrf: String,
    pub created_ms: i64,
    pub expires_ms: i64,
}

pub fn insert_session(c: &Connection, s: &SessionRow) -> StoreResult<()> {
    let (role, client, merchant) = s.role.stored();
    c.prepare_cached(
        "INSERT INTO dashboard_sessions (session_hash, user_name, role, client_id, \
         reference_merchant_id, csrf, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        s.session_hash,
        s.user_name,
        role,
        client,
        merchant,
        s.csrf,
        s.created_ms,
        s.expires_ms
    ])?;
    Ok(())
}

/// The session of `hash` if it is neither ended nor expired at `now_ms`.
pub fn live_session(c: &Connection, hash: &str, now_ms: i64) -> StoreResult<Option<SessionRow>> {
    Ok(c.prepare_cached(
        "SELECT session_hash, user_name, role, client_id, reference_merchant_id, csrf, \
         created_ms, expires_ms FROM dashboard_sessions \
         WHERE session_hash = ?1 AND ended_ms IS NULL AND expires_ms > ?2",
    )?
    .query_row(params![hash, now_ms], |r| {
        let user_name: String = r.get(1)?;
        let role: String = r.get(2)?;
        let role = Role::from_stored(&role, r.get(3)?, r.get(4)?, &|| {
            format!("a session of {user_name}")
        })?;
        Ok(SessionRow {
            session_hash: r.get(0)?,
            user_name,
            role,
            csrf: r.get(5)?,
            created_ms: r.get(6)?,
            expires_ms: r.get(7)?,
        })
    })
    .optional()?)
}

pub fn end_session(c: &Connection, hash: &str, now_ms: i64) -> StoreResult<bool> {
    Ok(c.prepare_cached(
        "UPDATE dashboard_sessions SET ended_ms = ?2 WHERE session_hash = ?1 AND ended_ms IS NULL",
    )?
    .execute(params![hash, now_ms])?
        == 1)
}

/// Deletes sessions that expired before `before_ms`.
pub fn prune_sessions(c: &Connection, before_ms: i64) -> StoreResult<usize> {
    Ok(
        c.prepare_cached("DELETE FROM dashboard_sessions WHERE expires_ms < ?1")?
            .execute(params![before_ms])?,
    )
}

/// What a payment search may filter on. Text filters match exactly; `code_last4` matches the
/// masked code's last four digits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentFilter {
    pub payment_id: Option<String>,
    pub payment_request_id: Option<String>,
    pub code_last4: Option<String>,
    pub client_id: Option<String>,
    pub reference_merchant_id: Option<String>,
    pub reference_store_id: Option<String>,
    pub terminal_id: Option<String>,
    pub wallet: Option<String>,
    pub currency: Option<String>,
    /// A stored status word (`PROCESSING`, `SUCCESS`, `FAIL`, `CANCELLED`).
    pub status: Option<String>,
    pub min_amount_minor: Option<i64>,
    pub max_amount_minor: Option<i64>,
    pub from_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortKey {
    #[default]
    Created,
    Amount,
}

/// The order of a search and where its page starts: after (`key`, `payment_id`) of the last
/// row of the previous page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub sort: SortKey,
    pub ascending: bool,
    pub after: Option<(i64, String)>,
    pub limit: usize,
}

enum Arg {
    Text(String),
    Int(i64),
}

impl Arg {
    fn as_sql(&self) -> &dyn ToSql {
        match self {
            Arg::Text(s) => s,
            Arg::Int(i) => i,
        }
    }
}

/// `WHERE …` of a filter, with its arguments numbered from 1.
fn where_clause(f: &PaymentFilter) -> (String, Vec<Arg>) {
    let mut conds: Vec<String> = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    let mut text = |col: &str, v: &Option<String>, conds: &mut Vec<String>| {
        if let Some(v) = v {
            args.push(Arg::Text(v.clone()));
            conds.push(format!("{col} = ?{}", args.len()));
        }
    };
    text("payment_id", &f.payment_id, &mut conds);
    text("payment_request_id", &f.payment_request_id, &mut conds);
    if f.payment_request_id.is_some() && f.client_id.is_none() {
        // Request ids are unique per client: look them up in each client's part of that
        // unique index rather than keeping a second index of them.
        conds.push("client_id IN (SELECT client_id FROM clients)".to_string());
    }
    text("client_id", &f.client_id, &mut conds);
    text(
        "reference_merchant_id",
        &f.reference_merchant_id,
        &mut conds,
    );
    text("reference_store_id", &f.reference_store_id, &mut conds);
    text("terminal_id", &f.terminal_id, &mut conds);
    text("wallet", &f.wallet, &mut conds);
    text("currency", &f.currency, &mut conds);
    text("status", &f.status, &mut conds);
    if let Some(d) = &f.code_last4 {
        args.push(Arg::Text(d.clone()));
        conds.push(format!("code_last4 = ?{}", args.len()));
    }
    let mut int = |cond: &str, v: Option<i64>, conds: &mut Vec<String>| {
        if let Some(v) = v {
            args.push(Arg::Int(v));
            conds.push(format!("{cond} ?{}", args.len()));
        }
    };
    int("amount_minor >=", f.min_amount_minor, &mut conds);
    int("amount_minor <=", f.max_amount_minor, &mut conds);
    int("created_ms >=", f.from_ms, &mut conds);
    int("created_ms <", f.until_ms, &mut conds);
    let clause = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    (clause, args)
}

/// One page of payments matching `f`, in the page's order. Ask for `limit + 1` rows to know
/// whether a next page exists.
pub fn search_payments(
    c: &Connection,
    f: &PaymentFilter,
    page: &Page,
) -> StoreResult<Vec<PaymentRow>> {
    let (mut clause, mut args) = where_clause(f);
    let key = match page.sort {
        SortKey::Created => "created_ms",
        SortKey::Amount => "amount_minor",
    };
    let (cmp, dir) = if page.ascending {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    if let Some((k, id)) = &page.after {
        args.push(Arg::Int(*k));
        args.push(Arg::Text(id.clone()));
        let (a, b) = (args.len() - 1, args.len());
        let cond = format!("({key} {cmp} ?{a} OR ({key} = ?{a} AND payment_id {cmp} ?{b}))");
        clause = if clause.is_empty() {
            format!("WHERE {cond}")
        } else {
            format!("{clause} AND {cond}")
        };
    }
    args.push(Arg::Int(page.limit as i64));
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments {clause} ORDER BY {key} {dir}, payment_id {dir} LIMIT ?{}",
        args.len()
    );
    let refs: Vec<&dyn ToSql> = args.iter().map(Arg::as_sql).collect();
    Ok(c.query_all_cached(&sql, refs.as_slice(), payment_from_row)?)
}

/// Payments of one bucket (`created_ms / bucket_ms`), wallet, currency and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRow {
    pub bucket: i64,
    pub wallet: String,
    pub currency: String,
    pub status: String,
    pub count: i64,
    pub amount_minor: i64,
}

/// Payments created in [`from_ms`, `until_ms`) grouped by time bucket, wallet, currency and
/// status: one index range of `payments_created`, or of `payments_client_created` for one
/// client (a statement of its own, so that the planner sees the equality).
pub fn volume(
    c: &Connection,
    from_ms: i64,
    until_ms: i64,
    bucket_ms: i64,
    client_id: Option<&str>,
    reference_merchant_id: Option<&str>,
) -> StoreResult<Vec<VolumeRow>> {
    let select = "SELECT created_ms / ?3 AS bucket, wallet, currency, status, COUNT(*), \
                  SUM(amount_minor) FROM payments WHERE created_ms >= ?1 AND created_ms < ?2";
    let group = "GROUP BY created_ms / ?3, wallet, currency, status ORDER BY 1";
    let row = |r: &paycode_db::sql::Row<'_>| {
        Ok(VolumeRow {
            bucket: r.get(0)?,
            wallet: r.get(1)?,
            currency: r.get(2)?,
            status: r.get(3)?,
            count: r.get(4)?,
            amount_minor: r.get(5)?,
        })
    };
    Ok(match (client_id, reference_merchant_id) {
        (None, _) => c.query_all_cached(
            &format!("{select} {group}"),
            params![from_ms, until_ms, bucket_ms],
            row,
        )?,
        (Some(client), None) => c.query_all_cached(
            &format!("{select} AND client_id = ?4 {group}"),
            params![from_ms, until_ms, bucket_ms, client],
            row,
        )?,
        (Some(client), Some(merchant)) => c.query_all_cached(
            &format!("{select} AND client_id = ?4 AND reference_merchant_id = ?5 {group}"),
            params![from_ms, until_ms, bucket_ms, client, merchant],
            row,
        )?,
    })
}

/// The latest refunds, newest first, each with its payment's merchant.
pub fn recent_refunds(
    c: &Connection,
    limit: usize,
    client_id: Option<&str>,
    reference_merchant_id: Option<&str>,
) -> StoreResult<Vec<(super::RefundRow, String)>> {
    let ids: Vec<(String, String)> = c.query_all_cached(
        "SELECT r.refund_id, p.reference_merchant_id FROM refunds r \
         JOIN payments p ON p.payment_id = r.payment_id \
         WHERE (CAST(?2 AS TEXT) IS NULL OR r.client_id = ?2) \
         AND (CAST(?3 AS TEXT) IS NULL OR p.reference_merchant_id = ?3) \
         ORDER BY r.created_ms DESC, r.refund_id DESC LIMIT ?1",
        params![limit as i64, client_id, reference_merchant_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut out = Vec::with_capacity(ids.len());
    for (id, merchant) in ids {
        if let Some(r) = super::refund_by_id(c, &id)? {
            out.push((r, merchant));
        }
    }
    Ok(out)
}

/// The newest operator-log entry of `action`, if any.
pub fn last_logged(
    c: &Connection,
    action: &str,
) -> StoreResult<Option<super::agents::OperatorLogRow>> {
    Ok(c.prepare_cached(
        "SELECT at_ms, actor, action, target, detail FROM operator_log WHERE action = ?1 \
         ORDER BY seq DESC LIMIT 1",
    )?
    .query_row([action], |r| {
        Ok(super::agents::OperatorLogRow {
            at_ms: r.get(0)?,
            actor: r.get(1)?,
            action: r.get(2)?,
            target: r.get(3)?,
            detail: r.get(4)?,
        })
    })
    .optional()?)
}
