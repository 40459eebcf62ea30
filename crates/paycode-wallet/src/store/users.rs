//! The `users` and `ledger` tables.

use super::{LedgerKind, StoreError};
use crate::policy::UserLimits;
use paycode_db::sql::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use paycode_db::sql::{self, Connection, OptionalExtension, params};

impl ToSql for LedgerKind {
    fn to_sql(&self) -> sql::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

/// A `kind` the wallet never writes fails the read (and becomes [`StoreError::Corrupt`]).
impl FromSql for LedgerKind {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<LedgerKind> {
        LedgerKind::parse(value.as_str()?).map_err(|e| FromSqlError::Other(e.to_string().into()))
    }
}

/// What a payment decision needs to know about a user.
pub(crate) struct UserRow {
    pub customer_id: String,
    pub limits: UserLimits,
    pub password_failures: u32,
}

/// The user's row; locked in a write unit on PostgreSQL, so that the payments, refunds and
/// password attempts of one user decide one after the other.
pub(crate) fn load(conn: &Connection, name: &str) -> Result<Option<UserRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT customer_id, frozen, password_locked, balance_minor, \
                 pwfree_per_payment_minor, pwfree_daily_minor, hard_per_payment_minor, \
                 hard_daily_minor, password_failures FROM users WHERE name = ?1{}",
                conn.for_update()
            ),
            params![name],
            |r| {
                Ok(UserRow {
                    customer_id: r.get(0)?,
                    limits: UserLimits {
                        frozen: r.get(1)?,
                        password_locked: r.get(2)?,
                        balance_minor: r.get(3)?,
                        password_free_per_payment_minor: r.get(4)?,
                        password_free_daily_minor: r.get(5)?,
                        hard_limit_per_payment_minor: r.get(6)?,
                        hard_limit_daily_minor: r.get(7)?,
                    },
                    password_failures: r.get(8)?,
                })
            },
        )
        .optional()?)
}

pub(crate) fn exists(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM users WHERE name = ?1)",
        params![name],
        |r| r.get(0),
    )?)
}

/// A user to insert, with zero balance (the opening balance is a ledger row).
pub(crate) struct NewUserRow<'a> {
    pub name: &'a str,
    pub customer_id: &'a str,
    pub password_hash: &'a str,
    pub frozen: bool,
    pub limits: [i64; 4],
    pub created_at_ms: i64,
}

/// Inserts the user unless the name exists; whether it was inserted.
pub(crate) fn insert_if_absent(conn: &Connection, u: &NewUserRow<'_>) -> Result<bool, StoreError> {
    let [
        pwfree_per_payment,
        pwfree_daily,
        hard_per_payment,
        hard_daily,
    ] = u.limits;
    let n = conn.execute(
        "INSERT INTO users (name, customer_id, password_hash, balance_minor, frozen, \
         pwfree_per_payment_minor, pwfree_daily_minor, hard_per_payment_minor, \
         hard_daily_minor, created_at_ms) VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT DO NOTHING",
        params![
            u.name,
            u.customer_id,
            u.password_hash,
            u.frozen,
            pwfree_per_payment,
            pwfree_daily,
            hard_per_payment,
            hard_daily,
            u.created_at_ms
        ],
    )?;
    Ok(n == 1)
}

pub(crate) fn balance(conn: &Connection, name: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT balance_minor FROM users WHERE name = ?1{}",
                conn.for_update()
            ),
            params![name],
            |r| r.get(0),
        )
        .optional()?)
}

pub(crate) fn set_balance(
    conn: &Connection,
    name: &str,
    balance_minor: i64,
) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE users SET balance_minor = ?2 WHERE name = ?1",
        params![name, balance_minor],
    )?;
    found(n, name)
}

/// One ledger row.
pub(crate) struct LedgerEntry<'a> {
    pub user_name: &'a str,
    pub kind: LedgerKind,
    pub amount_minor: i64,
    pub payment_request_id: Option<&'a str>,
    pub refund_request_id: Option<&'a str>,
    pub merchant_name: Option<&'a str>,
    pub at_ms: i64,
}

impl LedgerEntry<'_> {
    /// A credit by the operator (opening balance, top-up): no payment, refund or merchant.
    pub(crate) fn operator_credit(
        user_name: &str,
        amount_minor: i64,
        kind: LedgerKind,
        at_ms: i64,
    ) -> LedgerEntry<'_> {
        LedgerEntry {
            user_name,
            kind,
            amount_minor,
            payment_request_id: None,
            refund_request_id: None,
            merchant_name: None,
            at_ms,
        }
    }
}

pub(crate) fn append_ledger(conn: &Connection, e: &LedgerEntry<'_>) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO ledger (user_name, kind, amount_minor, payment_request_id, refund_request_id, \
         merchant_name, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            e.user_name,
            e.kind,
            e.amount_minor,
            e.payment_request_id,
            e.refund_request_id,
            e.merchant_name,
            e.at_ms
        ],
    )?;
    Ok(())
}

/// A user's ledger rows other than payments (credits), newest first.
pub(crate) struct CreditRow {
    pub kind: LedgerKind,
    pub amount_minor: i64,
    pub merchant_name: Option<String>,
    pub payment_request_id: Option<String>,
    pub at_ms: i64,
}

pub(crate) fn credits_newest(
    conn: &Connection,
    user: &str,
    limit: usize,
) -> Result<Vec<CreditRow>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut st = conn.prepare_cached(
        "SELECT kind, amount_minor, merchant_name, payment_request_id, at_ms FROM ledger \
         WHERE user_name = ?1 AND kind <> 'PAYMENT' ORDER BY entry_id DESC LIMIT ?2",
    )?;
    let rows = st.query_map(params![user, limit], |r| {
        Ok(CreditRow {
            kind: r.get(0)?,
            amount_minor: r.get(1)?,
            merchant_name: r.get(2)?,
            payment_request_id: r.get(3)?,
            at_ms: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Records the count of consecutive wrong passwords and whether the password is now locked.
pub(crate) fn set_password_failures(
    conn: &Connection,
    name: &str,
    failures: u32,
    locked: bool,
) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE users SET password_failures = ?2, password_locked = ?3 WHERE name = ?1",
        params![name, failures, locked],
    )?;
    found(n, name)
}

pub(crate) fn reset_password_failures(conn: &Connection, name: &str) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE users SET password_failures = 0 WHERE name = ?1",
        params![name],
    )?;
    found(n, name)
}

pub(crate) fn set_frozen(conn: &Connection, name: &str, frozen: bool) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE users SET frozen = ?2 WHERE name = ?1",
        params![name, frozen],
    )?;
    found(n, name)
}

/// Clears a password lock and its wrong-attempt count.
pub(crate) fn unlock_password(conn: &Connection, name: &str) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE users SET password_locked = 0, password_failures = 0 WHERE name = ?1",
        params![name],
    )?;
    found(n, name)
}

/// What the customer API needs to know about a user before checking a password.
pub(crate) struct UserAuth {
    pub password_hash: String,
    pub locked: bool,
}

pub(crate) fn auth(conn: &Connection, name: &str) -> Result<Option<UserAuth>, StoreError> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT password_hash, password_locked FROM users WHERE name = ?1{}",
                conn.for_update()
            ),
            params![name],
            |r| {
                Ok(UserAuth {
                    password_hash: r.get(0)?,
                    locked: r.get(1)?,
                })
            },
        )
        .optional()?)
}

pub(crate) struct BalanceView {
    pub balance_minor: i64,
    pub frozen: bool,
    pub locked: bool,
}

pub(crate) fn balance_view(
    conn: &Connection,
    name: &str,
) -> Result<Option<BalanceView>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT balance_minor, frozen, password_locked FROM users WHERE name = ?1",
            params![name],
            |r| {
                Ok(BalanceView {
                    balance_minor: r.get(0)?,
                    frozen: r.get(1)?,
                    locked: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// An update of one user's row must have found it.
fn found(n_rows: usize, name: &str) -> Result<(), StoreError> {
    if n_rows == 0 {
        return Err(StoreError::NotFound(format!("user {name:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::conn;

    fn alice(c: &Connection) {
        let row = NewUserRow {
            name: "alice",
            customer_id: "C-alice",
            password_hash: "h",
            frozen: false,
            limits: [1, 2, 3, 4],
            created_at_ms: 0,
        };
        assert!(insert_if_absent(c, &row).unwrap());
        assert!(
            !insert_if_absent(c, &row).unwrap(),
            "a second insert is ignored"
        );
    }

    fn credit(kind: LedgerKind, amount_minor: i64, at_ms: i64) -> LedgerEntry<'static> {
        LedgerEntry::operator_credit("alice", amount_minor, kind, at_ms)
    }

    #[test]
    fn a_user_reads_back_with_limits_and_password_state() {
        let c = conn();
        alice(&c);
        set_balance(&c, "alice", 900).unwrap();
        set_password_failures(&c, "alice", 2, false).unwrap();
        let u = load(&c, "alice").unwrap().unwrap();
        assert_eq!(u.customer_id, "C-alice");
        assert_eq!(u.password_failures, 2);
        assert_eq!(u.limits.balance_minor, 900);
        assert_eq!(u.limits.hard_limit_daily_minor, 4);
        reset_password_failures(&c, "alice").unwrap();
        set_password_failures(&c, "alice", 5, true).unwrap();
        assert!(auth(&c, "alice").unwrap().unwrap().locked);
        unlock_password(&c, "alice").unwrap();
        let u = load(&c, "alice").unwrap().unwrap();
        assert!(!u.limits.password_locked);
        assert_eq!(u.password_failures, 0);
        assert!(load(&c, "bob").unwrap().is_none());
        assert!(matches!(
            set_frozen(&c, "bob", true),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn credits_are_newest_first_without_payments_and_a_strange_kind_is_corrupt() {
        let c = conn();
        alice(&c);
        append_ledger(&c, &credit(LedgerKind::Opening, 100, 1)).unwrap();
        append_ledger(&c, &credit(LedgerKind::Payment, -40, 2)).unwrap();
        append_ledger(&c, &credit(LedgerKind::Topup, 50, 3)).unwrap();
        let kinds: Vec<LedgerKind> = credits_newest(&c, "alice", 10)
            .unwrap()
            .into_iter()
            .map(|r| r.kind)
            .collect();
        assert_eq!(kinds, [LedgerKind::Topup, LedgerKind::Opening]);
        c.execute("UPDATE ledger SET kind = 'GIFT' WHERE kind = 'TOPUP'", [])
            .unwrap();
        assert!(matches!(
            credits_newest(&c, "alice", 10),
            Err(StoreError::Corrupt(_))
        ));
    }
}
