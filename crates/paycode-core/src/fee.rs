//! The merchant discount rate (MDR): a fee in basis points of the settlement amount, per
//! merchant with an optional override per wallet.
//!
//! **Rounding.** A fee is `amount * bps / 10000` rounded by the one rule,
//! [`round_half_even`](crate::fx::round_half_even).
//!
//! **Refunds return the fee pro rata, cumulatively.** After refunds totalling `R` of a payment
//! of `A` that was charged fee `F`, the fee returned so far is `round_half_even(F * R / A)`; one
//! refund returns the difference from what earlier refunds returned. So the fee returned never
//! exceeds the fee charged, a full refund (in one or many parts) returns exactly `F`, and the
//! result does not depend on how the refunds were split. `R` and `A` are the merchant's
//! transaction-currency amounts: that ratio is exact whatever the exchange rate on the refund
//! day, whereas settlement amounts of refunds are converted at that day's rate.

use crate::fx::round_half_even;
use crate::{Currency, Money};
use std::collections::BTreeMap;

pub const BPS_PER_UNIT: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeError {
    #[error("fee rate {0} bps is above 10000 bps (100%)")]
    RateTooHigh(u32),
    #[error("amounts in {0} and {1} cannot be combined")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount {0} must not be negative")]
    Negative(Money),
    #[error("refunds of {refunded_minor} minor units exceed the payment of {paid_minor}")]
    RefundExceedsPayment {
        refunded_minor: i64,
        paid_minor: i64,
    },
    #[error("amount overflows")]
    Overflow,
}

/// A merchant's fee rates: its own, and optional overrides per wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeSchedule {
    merchant_bps: u32,
    wallet_bps: BTreeMap<String, u32>,
}

impl FeeSchedule {
    pub fn new(merchant_bps: u32) -> Result<FeeSchedule, FeeError> {
        check_bps(merchant_bps)?;
        Ok(FeeSchedule {
            merchant_bps,
            wallet_bps: BTreeMap::new(),
        })
    }

    /// Payments through `wallet` are charged `bps` instead of the merchant's rate.
    pub fn with_wallet_rate(mut self, wallet: &str, bps: u32) -> Result<FeeSchedule, FeeError> {
        check_bps(bps)?;
        self.wallet_bps.insert(wallet.to_string(), bps);
        Ok(self)
    }

    /// The rate that applies to a payment through `wallet`.
    pub fn bps_for(&self, wallet: &str) -> u32 {
        self.wallet_bps
            .get(wallet)
            .copied()
            .unwrap_or(self.merchant_bps)
    }

    /// The fee on a payment of `amount` through `wallet`.
    pub fn fee(&self, wallet: &str, amount: Money) -> Result<Money, FeeError> {
        fee_on(amount, self.bps_for(wallet))
    }
}

fn check_bps(bps: u32) -> Result<(), FeeError> {
    if bps > BPS_PER_UNIT {
        Err(FeeError::RateTooHigh(bps))
    } else {
        Ok(())
    }
}

/// `amount * bps / 10000`, rounded half-even, in the amount's currency.
pub fn fee_on(amount: Money, bps: u32) -> Result<Money, FeeError> {
    check_bps(bps)?;
    if amount.amount_minor() < 0 {
        return Err(FeeError::Negative(amount));
    }
    let num = i128::from(amount.amount_minor()) * i128::from(bps);
    let fee = round_half_even(num, i128::from(BPS_PER_UNIT));
    let fee = i64::try_from(fee).map_err(|_| FeeError::Overflow)?;
    Ok(Money::new(fee, amount.currency()))
}

/// The part of `fee_charged` (on a payment of `paid`) that a refund of `refund` returns, when
/// earlier refunds of the same payment totalled `refunded_before`. `paid`, `refunded_before` and
/// `refund` are in the transaction currency; the result is in the fee's. See the module doc.
pub fn refund_fee(
    fee_charged: Money,
    paid: Money,
    refunded_before: Money,
    refund: Money,
) -> Result<Money, FeeError> {
    for m in [refunded_before, refund] {
        if m.currency() != paid.currency() {
            return Err(FeeError::CurrencyMismatch(paid.currency(), m.currency()));
        }
    }
    for m in [fee_charged, paid, refunded_before, refund] {
        if m.amount_minor() < 0 {
            return Err(FeeError::Negative(m));
        }
    }
    let after = refunded_before
        .amount_minor()
        .checked_add(refund.amount_minor())
        .ok_or(FeeError::Overflow)?;
    if after > paid.amount_minor() {
        return Err(FeeError::RefundExceedsPayment {
            refunded_minor: after,
            paid_minor: paid.amount_minor(),
        });
    }
    if paid.amount_minor() == 0 {
        return Ok(Money::new(0, fee_charged.currency()));
    }
    let returned_by = |refunded_minor: i64| {
        let num = i128::from(fee_charged.amount_minor()) * i128::from(refunded_minor);
        round_half_even(num, i128::from(paid.amount_minor()))
    };
    let delta = returned_by(after) - returned_by(refunded_before.amount_minor());
    let delta = i64::try_from(delta).map_err(|_| FeeError::Overflow)?;
    Ok(Money::new(delta, fee_charged.currency()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sgd(v: i64) -> Money {
        Money::new(v, Currency::parse("SGD").unwrap())
    }

    #[test]
    fn fee_is_rounded_half_even_and_wallet_rates_override() {
        let check = |amount: i64, bps: u32, expect: i64| {
            assert_eq!(
                fee_on(sgd(amount), bps).unwrap(),
                sgd(expect),
                "{amount} @ {bps}"
            );
        };
        check(10_000, 250, 250);
        check(9757, 250, 244); // 243.925
        check(50, 100, 0); // 0.5 -> 0
        check(150, 100, 2); // 1.5 -> 2
        check(0, 300, 0);
        assert_eq!(fee_on(sgd(1), 10_001), Err(FeeError::RateTooHigh(10_001)));
        let schedule = FeeSchedule::new(250)
            .unwrap()
            .with_wallet_rate("gcash", 180)
            .unwrap();
        assert_eq!(schedule.bps_for("gcash"), 180);
        assert_eq!(schedule.bps_for("sgpay"), 250);
        assert_eq!(schedule.fee("gcash", sgd(10_000)).unwrap(), sgd(180));
    }

    #[test]
    fn refunds_return_the_fee_pro_rata() {
        // Fee 244 on 9757; refund in three parts returns exactly 244 in total.
        let parts = [3000, 3000, 3757];
        let mut before = 0;
        let mut returned = 0;
        for part in parts {
            returned += refund_fee(sgd(244), sgd(9757), sgd(before), sgd(part))
                .unwrap()
                .amount_minor();
            before += part;
        }
        assert_eq!(returned, 244);
        assert_eq!(
            refund_fee(sgd(244), sgd(9757), sgd(0), sgd(4000)).unwrap(),
            sgd(100)
        ); // 100.03
        assert!(matches!(
            refund_fee(sgd(244), sgd(9757), sgd(9000), sgd(800)),
            Err(FeeError::RefundExceedsPayment { .. })
        ));
    }

    proptest! {
        #[test]
        fn refunded_fee_never_exceeds_the_fee(
            paid in 1i64..10_000_000,
            bps in 0u32..=10_000,
            cuts in prop::collection::vec(1i64..1_000_000, 1..6),
        ) {
            let fee = fee_on(sgd(paid), bps).unwrap();
            let mut before = 0i64;
            let mut returned = 0i64;
            for cut in cuts {
                let part = cut.min(paid - before);
                if part == 0 { break; }
                let r = refund_fee(fee, sgd(paid), sgd(before), sgd(part)).unwrap().amount_minor();
                prop_assert!(r >= 0);
                returned += r;
                before += part;
                prop_assert!(returned <= fee.amount_minor());
            }
            let rest = refund_fee(fee, sgd(paid), sgd(before), sgd(paid - before)).unwrap();
            prop_assert_eq!(returned + rest.amount_minor(), fee.amount_minor());
        }
    }
}
