//! Wire types of paycode's three HTTP APIs, in their camelCase JSON form.
//!
//! - [`merchant`]: the acquirer's merchant API (`/ams/api/v1/payments/…`), compatible with the
//!   official merchant SDKs.
//! - [`mpp`]: the acquirer ↔ wallet protocol (`/aps/api/v1/payments/…`).
//! - [`customer`]: the wallet's customer API used by the phone app (`/customer/v1/…`).
//!
//! These types are the contract and nothing more: they hold strings as the wire does, and each
//! service converts them by hand to its domain types at its edge, naming the offending field in
//! every error. Scalars that the public API documents as strings (amounts, ids) are also accepted
//! as JSON numbers on input ([`lenient_string`]); output always sends strings.

pub mod customer;
pub mod merchant;
pub mod mpp;

use serde::{Deserialize, Deserializer, Serialize};

/// `result` object present in every response of every API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultInfo {
    pub result_code: String,
    /// `S`, `F` or `U`.
    pub result_status: String,
    #[serde(default)]
    pub result_message: String,
}

impl ResultInfo {
    pub fn new(code: &str, status: &str, message: impl Into<String>) -> Self {
        ResultInfo {
            result_code: code.to_string(),
            result_status: status.to_string(),
            result_message: message.into(),
        }
    }

    pub fn success() -> Self {
        ResultInfo::new("SUCCESS", "S", "success")
    }

    pub fn is_success(&self) -> bool {
        self.result_status == "S"
    }
}

/// `{ currency, value }` with `value` an integer string in minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    pub currency: String,
    #[serde(deserialize_with = "lenient_string")]
    pub value: String,
}

impl Amount {
    pub fn new(currency: &str, value_minor: i64) -> Self {
        Amount {
            currency: currency.to_string(),
            value: value_minor.to_string(),
        }
    }
}

/// An FX quote as the public API shows it. `quoteCurrencyPair` is `BASE/QUOTE` and `quotePrice`
/// is how many QUOTE units one BASE unit buys, as a decimal string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quote {
    pub quote_id: String,
    pub quote_currency_pair: String,
    #[serde(deserialize_with = "lenient_string")]
    pub quote_price: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote_start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote_expiry_time: Option<String>,
    #[serde(default)]
    pub guaranteed: bool,
}

/// Accepts a JSON string or number and keeps its text; rejects anything else.
pub fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StrOrNum {
        S(String),
        N(serde_json::Number),
    }
    match StrOrNum::deserialize(d) {
        Ok(StrOrNum::S(s)) => Ok(s),
        Ok(StrOrNum::N(n)) => Ok(n.to_string()),
        Err(_) => Err(serde::de::Error::custom("expected a string or a number")),
    }
}

/// [`lenient_string`] for optional fields.
pub fn lenient_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "lenient_string")] String);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amount_value_accepts_string_and_number_and_sends_string() {
        let a: Amount = serde_json::from_str(r#"{"currency":"SGD","value":1250}"#).unwrap();
        assert_eq!(a.value, "1250");
        let b: Amount = serde_json::from_str(r#"{"currency":"SGD","value":"1250"}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"currency":"SGD","value":"1250"}"#
        );
        assert!(serde_json::from_str::<Amount>(r#"{"currency":"SGD","value":[1]}"#).is_err());
    }
}
