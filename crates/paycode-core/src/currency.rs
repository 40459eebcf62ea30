//! ISO 4217 currencies, from the maintained `iso_currency` table (codes and minor-unit exponents).

use std::fmt;

/// An ISO 4217 currency with a defined minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    inner: iso_currency::Currency,
    exponent: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CurrencyError {
    #[error("{0:?} is not an ISO 4217 alphabetic currency code")]
    Unknown(String),
    #[error("{0} has no minor unit and cannot be used for payments")]
    NoMinorUnit(String),
}

impl Currency {
    /// Parses an upper-case alphabetic code such as `SGD`.
    pub fn parse(code: &str) -> Result<Currency, CurrencyError> {
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(CurrencyError::Unknown(code.to_string()));
        }
        let inner = iso_currency::Currency::from_code(code)
            .ok_or_else(|| CurrencyError::Unknown(code.to_string()))?;
        if inner.is_fund() || inner.is_special() {
            return Err(CurrencyError::NoMinorUnit(code.to_string()));
        }
        let exponent = inner
            .exponent()
            .ok_or_else(|| CurrencyError::NoMinorUnit(code.to_string()))?;
        let exponent = u8::try_from(exponent).expect("ISO 4217 exponents are at most 4");
        Ok(Currency { inner, exponent })
    }

    pub fn code(self) -> &'static str {
        self.inner.code()
    }

    /// Number of decimal places of the minor unit (JPY 0, SGD 2, KWD 3).
    pub fn exponent(self) -> u8 {
        self.exponent
    }

    /// 10^exponent.
    pub fn minor_per_major(self) -> i64 {
        10i64.pow(u32::from(self.exponent))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponents_come_from_the_iso_table() {
        for (code, exp) in [
            ("JPY", 0),
            ("SGD", 2),
            ("CNY", 2),
            ("KWD", 3),
            ("BHD", 3),
            ("KRW", 0),
        ] {
            assert_eq!(Currency::parse(code).unwrap().exponent(), exp, "{code}");
        }
        assert!(Currency::parse("sgd").is_err());
        assert!(Currency::parse("XXX").is_err());
        assert!(Currency::parse("ABC").is_err());
        assert!(Currency::parse("SGDX").is_err());
    }
}
