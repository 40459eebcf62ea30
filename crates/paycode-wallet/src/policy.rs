//! The wallet's decision for one payment: pay now, ask for the password, or reject with the
//! SPEC §2.3 code. Pure, so that the whole table is one function with one test helper.
//!
//! Order of the checks (the first that applies wins): frozen user → `USER_STATUS_ABNORMAL`; over a
//! hard limit (per payment, or today's paid total plus this one over the daily one) →
//! `USER_AMOUNT_EXCEED_LIMIT`; balance short → `USER_BALANCE_NOT_ENOUGH`; over a password-free
//! limit → challenge, unless the password is locked (`USER_PAYMENT_VERIFICATION_FAILED`); else
//! pay now. "Today" is the UTC calendar day.

use paycode_core::ResultCode;

/// What the decision needs to know about the user, all amounts in the wallet currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserLimits {
    pub frozen: bool,
    pub password_locked: bool,
    pub balance_minor: i64,
    pub password_free_per_payment_minor: i64,
    pub password_free_daily_minor: i64,
    pub hard_limit_per_payment_minor: i64,
    pub hard_limit_daily_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    PayNow,
    Challenge { reason: String },
    Reject(ResultCode),
}

/// Decides a payment of `amount_minor` given what the user already paid today.
pub fn decide(user: &UserLimits, amount_minor: i64, paid_today_minor: i64) -> Decision {
    let day_total = paid_today_minor.saturating_add(amount_minor);
    if user.frozen {
        return Decision::Reject(ResultCode::USER_STATUS_ABNORMAL);
    }
    if amount_minor > user.hard_limit_per_payment_minor || day_total > user.hard_limit_daily_minor {
        return Decision::Reject(ResultCode::USER_AMOUNT_EXCEED_LIMIT);
    }
    if amount_minor > user.balance_minor {
        return Decision::Reject(ResultCode::USER_BALANCE_NOT_ENOUGH);
    }
    let reason = if amount_minor > user.password_free_per_payment_minor {
        "over the password-free limit per payment"
    } else if day_total > user.password_free_daily_minor {
        "over the password-free daily limit"
    } else {
        return Decision::PayNow;
    };
    if user.password_locked {
        return Decision::Reject(ResultCode::USER_PAYMENT_VERIFICATION_FAILED);
    }
    Decision::Challenge {
        reason: reason.to_string(),
    }
}

/// What is checked again when the user confirms a challenge: the user may have been frozen, or
/// spent the balance, while the challenge waited. The password-free limits no longer matter.
pub fn decide_at_confirm(
    user: &UserLimits,
    amount_minor: i64,
    paid_today_minor: i64,
) -> Result<(), ResultCode> {
    let relaxed = UserLimits {
        password_free_per_payment_minor: i64::MAX,
        password_free_daily_minor: i64::MAX,
        password_locked: false,
        ..*user
    };
    match decide(&relaxed, amount_minor, paid_today_minor) {
        Decision::PayNow => Ok(()),
        Decision::Reject(code) => Err(code),
        Decision::Challenge { .. } => Err(ResultCode::PROCESS_FAIL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: UserLimits = UserLimits {
        frozen: false,
        password_locked: false,
        balance_minor: 10_000,
        password_free_per_payment_minor: 1_000,
        password_free_daily_minor: 2_000,
        hard_limit_per_payment_minor: 5_000,
        hard_limit_daily_minor: 8_000,
    };

    fn check(user: UserLimits, amount: i64, paid_today: i64, expect: &str) {
        let got = match decide(&user, amount, paid_today) {
            Decision::PayNow => "pay".to_string(),
            Decision::Challenge { .. } => "challenge".to_string(),
            Decision::Reject(c) => c.as_str().to_string(),
        };
        assert_eq!(
            got, expect,
            "amount {amount}, paid today {paid_today}, {user:?}"
        );
    }

    #[test]
    fn the_decision_table() {
        check(BASE, 500, 0, "pay");
        check(BASE, 1_000, 1_000, "pay");
        check(BASE, 1_001, 0, "challenge");
        check(BASE, 600, 1_500, "challenge");
        check(BASE, 5_000, 0, "challenge");
        check(BASE, 5_001, 0, "USER_AMOUNT_EXCEED_LIMIT");
        check(BASE, 1_000, 7_500, "USER_AMOUNT_EXCEED_LIMIT");
        check(
            UserLimits {
                balance_minor: 400,
                ..BASE
            },
            500,
            0,
            "USER_BALANCE_NOT_ENOUGH",
        );
        check(
            UserLimits {
                frozen: true,
                ..BASE
            },
            1,
            0,
            "USER_STATUS_ABNORMAL",
        );
        check(
            UserLimits {
                password_locked: true,
                ..BASE
            },
            500,
            0,
            "pay",
        );
        check(
            UserLimits {
                password_locked: true,
                ..BASE
            },
            2_000,
            0,
            "USER_PAYMENT_VERIFICATION_FAILED",
        );
    }

    #[test]
    fn confirm_rechecks_status_balance_and_hard_limits_only() {
        assert_eq!(decide_at_confirm(&BASE, 4_000, 0), Ok(()));
        assert_eq!(
            decide_at_confirm(
                &UserLimits {
                    balance_minor: 10,
                    ..BASE
                },
                4_000,
                0
            ),
            Err(ResultCode::USER_BALANCE_NOT_ENOUGH)
        );
        assert_eq!(
            decide_at_confirm(
                &UserLimits {
                    frozen: true,
                    ..BASE
                },
                4_000,
                0
            ),
            Err(ResultCode::USER_STATUS_ABNORMAL)
        );
        assert_eq!(
            decide_at_confirm(&BASE, 4_000, 5_000),
            Err(ResultCode::USER_AMOUNT_EXCEED_LIMIT)
        );
    }
}
