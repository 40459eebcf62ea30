//! Amounts as integers in the currency's minor unit, with checked arithmetic.
//!
//! There is no `Default`, no float, and no unchecked operator: every operation that could
//! overflow or mix currencies returns a [`MoneyError`].

use crate::Currency;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency mismatch: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount overflows")]
    Overflow,
    #[error("{0:?} is not a whole number of minor units")]
    NotAnInteger(String),
    #[error("{text:?} has more than {exponent} decimal places for {currency}")]
    TooManyDecimals {
        text: String,
        currency: Currency,
        exponent: u8,
    },
    #[error("{0:?} is not a decimal amount")]
    NotADecimal(String),
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Money {
        Money {
            amount_minor,
            currency,
        }
    }

    pub fn amount_minor(self) -> i64 {
        self.amount_minor
    }

    pub fn currency(self) -> Currency {
        self.currency
    }

    pub fn is_positive(self) -> bool {
        self.amount_minor > 0
    }

    /// Parses the wire form: an integer string of minor units, digits only, no sign, no
    /// leading `+`, at most 18 digits.
    pub fn from_minor_str(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MoneyError::NotAnInteger(text.to_string()));
        }
        let amount_minor = text
            .parse::<i64>()
            .map_err(|_| MoneyError::NotAnInteger(text.to_string()))?;
        Ok(Money::new(amount_minor, currency))
    }

    /// Parses an amount as a person writes it (`12.50`, `1000`, `0.5`) exactly: more decimals
    /// than the currency has is an error, never a rounding.
    pub fn from_decimal_str(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        let bad = || MoneyError::NotADecimal(text.to_string());
        let (whole, frac) = match text.split_once('.') {
            Some((w, f)) => (w, f),
            None => (text, ""),
        };
        if whole.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if text.ends_with('.') {
            return Err(bad());
        }
        let exponent = currency.exponent();
        if frac.len() > usize::from(exponent) {
            return Err(MoneyError::TooManyDecimals {
                text: text.to_string(),
                currency,
                exponent,
            });
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| MoneyError::Overflow)?
        };
        let mut frac_minor: i64 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| bad())?
        };
        for _ in frac.len()..usize::from(exponent) {
            frac_minor *= 10;
        }
        let amount_minor = whole
            .checked_mul(currency.minor_per_major())
            .and_then(|w| w.checked_add(frac_minor))
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount_minor, currency))
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount_minor = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount_minor, self.currency))
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount_minor = self
            .amount_minor
            .checked_sub(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount_minor, self.currency))
    }

    pub fn checked_neg(self) -> Result<Money, MoneyError> {
        let amount_minor = self
            .amount_minor
            .checked_neg()
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount_minor, self.currency))
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency, other.currency))
        }
    }

    /// The amount as a person reads it, without the currency: `12.50`, `1000`, `-0.05`.
    pub fn to_decimal_string(self) -> String {
        let exponent = usize::from(self.currency.exponent());
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let abs = self.amount_minor.unsigned_abs();
        if exponent == 0 {
            return format!("{sign}{abs}");
        }
        let per = self.currency.minor_per_major().unsigned_abs();
        format!("{sign}{}.{:0exponent$}", abs / per, abs % per)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal_string(), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cur(c: &str) -> Currency {
        Currency::parse(c).unwrap()
    }

    #[test]
    fn decimal_parsing_is_exact_or_an_error() {
        let check = |text: &str, c: &str, expect: Result<i64, ()>| {
            let got = Money::from_decimal_str(text, cur(c))
                .map(|m| m.amount_minor())
                .map_err(|_| ());
            assert_eq!(got, expect, "{text} {c}");
        };
        check("12.50", "SGD", Ok(1250));
        check("12.5", "SGD", Ok(1250));
        check("12", "SGD", Ok(1200));
        check("0.01", "SGD", Ok(1));
        check(".5", "SGD", Ok(50));
        check("1000", "JPY", Ok(1000));
        check("1.5", "JPY", Err(()));
        check("12.505", "SGD", Err(()));
        check("1.234", "KWD", Ok(1234));
        check("-1", "SGD", Err(()));
        check("1e3", "SGD", Err(()));
        check("12.", "SGD", Err(()));
        check("", "SGD", Err(()));
        check("99999999999999999999", "SGD", Err(()));
    }

    #[test]
    fn minor_strings_are_plain_digits() {
        assert_eq!(
            Money::from_minor_str("1250", cur("SGD"))
                .unwrap()
                .amount_minor(),
            1250
        );
        for bad in ["", "-1", "+1", "1.0", "1e2", " 1", "1234567890123456789"] {
            assert!(Money::from_minor_str(bad, cur("SGD")).is_err(), "{bad}");
        }
    }

    #[test]
    fn arithmetic_is_checked() {
        let a = Money::new(i64::MAX, cur("SGD"));
        assert_eq!(
            a.checked_add(Money::new(1, cur("SGD"))),
            Err(MoneyError::Overflow)
        );
        assert!(matches!(
            Money::new(1, cur("SGD")).checked_add(Money::new(1, cur("CNY"))),
            Err(MoneyError::CurrencyMismatch(..))
        ));
    }

    proptest! {
        #[test]
        fn display_and_parse_round_trip(v in 0i64..1_000_000_000_000, c in prop::sample::select(vec!["SGD", "JPY", "KWD", "CNY"])) {
            let m = Money::new(v, cur(c));
            prop_assert_eq!(Money::from_decimal_str(&m.to_decimal_string(), cur(c)).unwrap(), m);
        }
    }
}
