//! The payment-code format: 24 digits = 6-digit Code Issuer Identifier (CII) + 2-digit Business
//! Type Identifier (BTI, `02` = payment code) + 16-digit User Identification Number (UIN).
//! Legacy codes (17–19 digits starting `28`) are recognised by the acquirer's routing table;
//! this module only checks that they are digits of that shape.

use std::fmt;

pub const CII_LEN: usize = 6;
pub const BTI_LEN: usize = 2;
pub const UIN_LEN: usize = 16;
pub const CODE_LEN: usize = CII_LEN + BTI_LEN + UIN_LEN;
pub const BTI_PAYMENT: &str = "02";

/// A syntactically valid payment code (digits only). Its `Debug` and `Display` mask all but the
/// last four digits, so that a full code never reaches a log by accident.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PaymentCode {
    digits: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("payment code must contain only digits")]
    NotDigits,
    #[error("payment code has {0} digits; expected 24 (or a 17-19 digit legacy code)")]
    BadLength(usize),
    #[error("payment code's business type is {0}, not 02 (payment code)")]
    NotAPaymentCode(String),
}

impl PaymentCode {
    pub fn parse(text: &str) -> Result<PaymentCode, CodeError> {
        if !text.bytes().all(|b| b.is_ascii_digit()) || text.is_empty() {
            return Err(CodeError::NotDigits);
        }
        match text.len() {
            CODE_LEN => {
                let bti = &text[CII_LEN..CII_LEN + BTI_LEN];
                if bti != BTI_PAYMENT {
                    return Err(CodeError::NotAPaymentCode(bti.to_string()));
                }
            }
            17..=19 if text.starts_with("28") => {}
            n => return Err(CodeError::BadLength(n)),
        }
        Ok(PaymentCode {
            digits: text.to_string(),
        })
    }

    /// Builds a 24-digit code from its parts.
    pub fn from_parts(cii: &str, uin: &str) -> Result<PaymentCode, CodeError> {
        PaymentCode::parse(&format!("{cii}{BTI_PAYMENT}{uin}"))
    }

    pub fn is_standard(&self) -> bool {
        self.digits.len() == CODE_LEN
    }

    /// The CII of a standard code.
    pub fn cii(&self) -> Option<&str> {
        self.is_standard().then(|| &self.digits[..CII_LEN])
    }

    /// The UIN of a standard code.
    pub fn uin(&self) -> Option<&str> {
        self.is_standard()
            .then(|| &self.digits[CII_LEN + BTI_LEN..])
    }

    /// The full digits: for the wallet call and the code check only, never for logs.
    pub fn expose_digits(&self) -> &str {
        &self.digits
    }

    pub fn masked(&self) -> String {
        mask(&self.digits)
    }
}

/// Masks all but the last four characters: `********************1234`.
pub fn mask(digits: &str) -> String {
    let n = digits.chars().count();
    let keep = n.min(4);
    let mut out = "*".repeat(n - keep);
    out.extend(digits.chars().skip(n - keep));
    out
}

impl fmt::Debug for PaymentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PaymentCode({})", self.masked())
    }
}

impl fmt::Display for PaymentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_standard_and_legacy_codes() {
        let c = PaymentCode::parse("281001021234567890123456").unwrap();
        assert_eq!(c.cii(), Some("281001"));
        assert_eq!(c.uin(), Some("1234567890123456"));
        assert_eq!(format!("{c:?}"), "PaymentCode(********************3456)");
        assert!(
            PaymentCode::parse("28123456789012345")
                .unwrap()
                .cii()
                .is_none()
        );
        assert_eq!(
            PaymentCode::parse("2810010312345678901234567"),
            Err(CodeError::BadLength(25))
        );
        assert_eq!(
            PaymentCode::parse("281001031234567890123456"),
            Err(CodeError::NotAPaymentCode("03".into()))
        );
        assert_eq!(
            PaymentCode::parse("28100102123456789012345a"),
            Err(CodeError::NotDigits)
        );
        assert_eq!(
            PaymentCode::parse("12345678901234567"),
            Err(CodeError::BadLength(17))
        );
    }
}
