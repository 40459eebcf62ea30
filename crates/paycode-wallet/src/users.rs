//! Users: creation, balances, operator flags, the history the phone shows, and the one place
//! wrong passwords are counted (for challenges and device registration alike).

use crate::payment_state::PayState;
use crate::payments::move_money;
use crate::random::random_token;
use crate::store::users::{BalanceView, LedgerEntry, NewUserRow, UserAuth, UserRow};
use crate::store::{self, LedgerKind, StoreError};
use crate::{Inner, NewUser, WalletError};
use paycode_db::sql::Connection;
use std::sync::Arc;

pub(crate) async fn create_user(inner: &Arc<Inner>, u: NewUser) -> Result<(), WalletError> {
    if u.name.is_empty() || u.name.len() > 64 {
        return Err(WalletError::InvalidUser(
            "name must be 1 to 64 characters".into(),
        ));
    }
    let amounts = [
        u.balance_minor,
        u.password_free_per_payment_minor,
        u.password_free_daily_minor,
        u.hard_limit_per_payment_minor,
        u.hard_limit_daily_minor,
    ];
    if amounts.iter().any(|&a| a < 0) {
        return Err(WalletError::InvalidUser(
            "amounts and limits must not be negative".into(),
        ));
    }
    let name = u.name.clone();
    if inner
        .read_store(move |c| store::users::exists(c, &name))
        .await?
    {
        return Ok(());
    }
    let hash =
        crate::password::hash_async(u.password.clone(), inner.config.password_memory_kib).await?;
    let i = inner.clone();
    inner
        .db
        .write(move |conn| {
            let now_ms = i.now_ms();
            let customer_id = format!("{}{}", i.config.cii, random_token(12));
            let row = NewUserRow {
                name: &u.name,
                customer_id: &customer_id,
                password_hash: &hash,
                frozen: u.status_frozen,
                limits: [
                    u.password_free_per_payment_minor,
                    u.password_free_daily_minor,
                    u.hard_limit_per_payment_minor,
                    u.hard_limit_daily_minor,
                ],
                created_at_ms: now_ms,
            };
            if store::users::insert_if_absent(conn, &row)? && u.balance_minor > 0 {
                move_money(
                    conn,
                    &LedgerEntry::operator_credit(
                        &u.name,
                        u.balance_minor,
                        LedgerKind::Opening,
                        now_ms,
                    ),
                )?;
            }
            Ok(())
        })
        .await
}

pub(crate) async fn balance_of(inner: &Arc<Inner>, user: &str) -> Result<i64, WalletError> {
    let name = user.to_string();
    inner
        .read_store(move |c| store::users::balance(c, &name).map(|b| (b, name.clone())))
        .await
        .and_then(|(b, name)| b.ok_or(WalletError::UnknownUser(name)))
}

pub(crate) async fn top_up(
    inner: &Arc<Inner>,
    user: &str,
    amount_minor: i64,
) -> Result<i64, WalletError> {
    if amount_minor <= 0 {
        return Err(WalletError::InvalidUser("a top-up must be positive".into()));
    }
    let name = user.to_string();
    let i = inner.clone();
    inner
        .db
        .write(move |conn| {
            move_money(
                conn,
                &LedgerEntry::operator_credit(&name, amount_minor, LedgerKind::Topup, i.now_ms()),
            )
        })
        .await
}

pub(crate) enum UserFlag {
    Frozen(bool),
    Unlock,
}

pub(crate) async fn set_flag(
    inner: &Arc<Inner>,
    user: &str,
    flag: UserFlag,
) -> Result<(), WalletError> {
    let name = user.to_string();
    let report_url = inner.config.acquirer_url.as_ref().map(|u| {
        format!(
            "{}{}",
            u.trim_end_matches('/'),
            paycode_proto::mpp::CUSTOMER_RISK_PATH
        )
    });
    let now_ms = inner.now_ms();
    inner
        .db
        .write(move |conn| {
            let done = match flag {
                UserFlag::Frozen(f) => store::users::set_frozen(conn, &name, f),
                UserFlag::Unlock => store::users::unlock_password(conn, &name),
            };
            match done {
                Err(StoreError::NotFound(_)) => {
                    return Err(WalletError::UnknownUser(name.clone()));
                }
                other => other?,
            }
            // The acquirer hears of a freeze in the same transaction as the freeze itself, so
            // it is reported exactly when it happened, and retried until acknowledged.
            if let (UserFlag::Frozen(frozen), Some(url)) = (&flag, &report_url)
                && let Some(u) = store::users::load(conn, &name)?
            {
                let report = paycode_proto::mpp::CustomerRiskReport {
                    customer_id: u.customer_id.clone(),
                    risk_status: if *frozen { "BLOCKED" } else { "CLEARED" }.to_string(),
                    reason: Some(if *frozen {
                        "the wallet froze the user".to_string()
                    } else {
                        "the wallet unfroze the user".to_string()
                    }),
                };
                let body = serde_json::to_string(&report)
                    .map_err(|e| WalletError::Config(e.to_string()))?;
                store::outbox::enqueue(
                    conn,
                    &format!("customer:{}", u.customer_id),
                    url,
                    &body,
                    now_ms,
                )?;
            }
            Ok(())
        })
        .await
}

pub(crate) async fn user_auth(
    inner: &Arc<Inner>,
    user: &str,
) -> Result<Option<UserAuth>, WalletError> {
    let name = user.to_string();
    inner
        .read_store(move |c| store::users::auth(c, &name))
        .await
}

pub(crate) async fn balance_view(
    inner: &Arc<Inner>,
    user: String,
) -> Result<BalanceView, WalletError> {
    inner
        .read_store(move |c| store::users::balance_view(c, &user).map(|b| (b, user.clone())))
        .await
        .and_then(|(b, user)| b.ok_or(WalletError::UnknownUser(user)))
}

/// A password attempt, counted against the user.
pub(crate) enum PasswordAttempt {
    /// The password was already locked; the attempt was not checked.
    Locked,
    /// Wrong; `remaining` more wrong attempts lock the password.
    Wrong { remaining: u32 },
    /// Wrong, and this attempt locked the password.
    LockedNow,
    /// Right: the count of wrong attempts starts again.
    Right,
}

/// Counts a password attempt of `user` (already loaded in the caller's job as `u`): the one
/// place wrong passwords are counted and the password is locked after
/// `password_max_attempts`.
pub(crate) fn count_password_attempt(
    inner: &Inner,
    conn: &Connection,
    user: &str,
    u: &UserRow,
    password_ok: bool,
) -> Result<PasswordAttempt, WalletError> {
    if u.limits.password_locked {
        return Ok(PasswordAttempt::Locked);
    }
    if password_ok {
        store::users::reset_password_failures(conn, user)?;
        return Ok(PasswordAttempt::Right);
    }
    let failures = u.password_failures.saturating_add(1);
    let max = inner.config.password_max_attempts;
    let locked = failures >= max;
    store::users::set_password_failures(conn, user, failures, locked)?;
    Ok(if locked {
        PasswordAttempt::LockedNow
    } else {
        PasswordAttempt::Wrong {
            remaining: max - failures,
        }
    })
}

pub(crate) struct HistoryRow {
    pub kind: LedgerKind,
    pub amount_minor: i64,
    pub state: PayState,
    pub merchant_name: Option<String>,
    pub payment_request_id: Option<String>,
    pub at_ms: i64,
}

/// Newest first: every payment attempt of the user (with its state) and every credit.
pub(crate) async fn history(
    inner: &Arc<Inner>,
    user: String,
    limit: usize,
) -> Result<Vec<HistoryRow>, WalletError> {
    inner
        .read_store(move |c| {
            let payments = store::payments::of_user_newest(c, &user, limit)?;
            let credits = store::users::credits_newest(c, &user, limit)?;
            let mut out: Vec<HistoryRow> = payments
                .into_iter()
                .map(|p| HistoryRow {
                    kind: LedgerKind::Payment,
                    amount_minor: -p.amount_minor,
                    state: p.state,
                    merchant_name: Some(p.merchant_name),
                    payment_request_id: Some(p.payment_request_id),
                    at_ms: p.created_at_ms,
                })
                .chain(credits.into_iter().map(|l| HistoryRow {
                    kind: l.kind,
                    amount_minor: l.amount_minor,
                    state: PayState::Success,
                    merchant_name: l.merchant_name,
                    payment_request_id: l.payment_request_id,
                    at_ms: l.at_ms,
                }))
                .collect();
            out.sort_by_key(|h| std::cmp::Reverse(h.at_ms));
            out.truncate(limit);
            Ok(out)
        })
        .await
}
