//! What the POS, the app and the demo share: amounts typed by a person, amounts shown to a
//! person, and the merchant's signed client built from `demo.json`.
//!
//! Amounts are parsed exactly by [`paycode_core::Money::from_decimal_str`]: `12.50 SGD` is 1250
//! minor units, `1000 JPY` is 1000, and `12.505 SGD` is an error, never a rounding.

use crate::demo_file::DemoFile;
use anyhow::Context;
use paycode_core::{Currency, Money};
use paycode_http::paycode_sign::{PrivateKey, PublicKey};
use paycode_http::{CallError, SignedClient, Signer};
use paycode_proto::Amount;
use paycode_proto::merchant::{
    CancelResponse, CodeIssuerRequest, CodeIssuerResponse, InquiryPaymentResponse,
    InquiryRefundRequest, PayRequest, PayResponse, PaymentRef, RefundRequest, RefundResponse,
};
use std::time::Duration;

/// How long a merchant call other than `pay` may take before its outcome counts as unknown.
pub const CALL_TIMEOUT_MS: u64 = 10_000;
/// How long the POS waits for the "which wallet is this code?" answer before it charges without
/// it: the customer is waiting at the till, and the look-up only informs the cashier.
pub const DEFAULT_LOOKUP_TIMEOUT_MS: u64 = 3_000;

#[derive(Debug, thiserror::Error)]
pub enum AmountError {
    #[error("{0:?} is not a currency code (write it like SGD, JPY, CNY)")]
    Currency(String),
    #[error("{text} {currency} is not a valid amount: {reason}")]
    Amount {
        text: String,
        currency: String,
        reason: String,
    },
    #[error("the amount must be more than zero")]
    NotPositive,
}

/// Parses an amount as a person writes it (`12.50`, `1000`) in `currency` (case-insensitive).
pub fn parse_amount(text: &str, currency: &str) -> Result<Money, AmountError> {
    let code = currency.trim().to_ascii_uppercase();
    let currency =
        Currency::parse(&code).map_err(|_| AmountError::Currency(currency.to_string()))?;
    let money = Money::from_decimal_str(text.trim(), currency).map_err(|e| {
        let reason = match e {
            paycode_core::MoneyError::TooManyDecimals { exponent: 0, .. } => {
                format!("{code} has no decimals")
            }
            paycode_core::MoneyError::TooManyDecimals { exponent, .. } => {
                format!("{code} has {exponent} decimals at most")
            }
            other => other.to_string(),
        };
        AmountError::Amount {
            text: text.to_string(),
            currency: code.clone(),
            reason,
        }
    })?;
    if !money.is_positive() {
        return Err(AmountError::NotPositive);
    }
    Ok(money)
}

/// `SGD 12.50` from a wire amount; the raw text when the wire amount is not understood.
pub fn show_amount(a: &Amount) -> String {
    match Currency::parse(&a.currency).ok().and_then(|c| {
        Money::from_minor_str(a.value.trim_start_matches('-'), c)
            .ok()
            .map(|m| (c, m))
    }) {
        Some((c, m)) => {
            let sign = if a.value.starts_with('-') { "-" } else { "" };
            format!("{} {sign}{}", c.code(), m.to_decimal_string())
        }
        None => format!("{} {} (minor units)", a.currency, a.value),
    }
}

/// `SGD 12.50` from money.
pub fn show_money(m: Money) -> String {
    format!("{} {}", m.currency().code(), m.to_decimal_string())
}

/// The merchant API of the acquirer, signed as the demo merchant.
#[derive(Debug, Clone)]
pub struct MerchantApi {
    base_url: String,
    client: SignedClient,
    pay_client: SignedClient,
    lookup_client: SignedClient,
}

impl MerchantApi {
    /// Builds the clients from `demo.json`; `pay_timeout_ms` bounds the wait for a pay answer.
    pub fn from_demo(demo: &DemoFile, pay_timeout_ms: u64) -> anyhow::Result<MerchantApi> {
        MerchantApi::from_demo_with_lookup(demo, pay_timeout_ms, DEFAULT_LOOKUP_TIMEOUT_MS)
    }

    /// [`MerchantApi::from_demo`], with `lookup_timeout_ms` bounding the wait for
    /// [`MerchantApi::code_issuer`].
    pub fn from_demo_with_lookup(
        demo: &DemoFile,
        pay_timeout_ms: u64,
        lookup_timeout_ms: u64,
    ) -> anyhow::Result<MerchantApi> {
        let key = PrivateKey::parse(&demo.merchant_private_key)
            .context("demo.json: merchantPrivateKey is not a valid private key (restart `paycode serve` to rewrite it)")?;
        let peer = PublicKey::parse(&demo.acquirer_public_key)
            .context("demo.json: acquirerPublicKey is not a valid public key (restart `paycode serve` to rewrite it)")?;
        let signer = Signer::new(key, 1);
        let client = SignedClient::new(
            &demo.client_id,
            signer.clone(),
            Some(peer.clone()),
            Duration::from_millis(CALL_TIMEOUT_MS),
        );
        let pay_client = SignedClient::new(
            &demo.client_id,
            signer.clone(),
            Some(peer.clone()),
            Duration::from_millis(pay_timeout_ms),
        );
        let lookup_client = SignedClient::new(
            &demo.client_id,
            signer,
            Some(peer),
            Duration::from_millis(lookup_timeout_ms),
        );
        Ok(MerchantApi {
            base_url: demo.acquirer_url.trim_end_matches('/').to_string(),
            client,
            pay_client,
            lookup_client,
        })
    }

    fn url(&self, api: &str) -> String {
        format!("{}/ams/api/v1/payments/{api}", self.base_url)
    }

    pub async fn pay(&self, req: &PayRequest) -> Result<PayResponse, CallError> {
        self.pay_client.post(&self.url("pay"), req).await
    }

    pub async fn inquiry(&self, r: &PaymentRef) -> Result<InquiryPaymentResponse, CallError> {
        self.client.post(&self.url("inquiryPayment"), r).await
    }

    pub async fn cancel(&self, r: &PaymentRef) -> Result<CancelResponse, CallError> {
        self.client.post(&self.url("cancel"), r).await
    }

    pub async fn refund(&self, r: &RefundRequest) -> Result<RefundResponse, CallError> {
        self.client.post(&self.url("refund"), r).await
    }

    pub async fn inquiry_refund(
        &self,
        r: &InquiryRefundRequest,
    ) -> Result<RefundResponse, CallError> {
        self.client.post(&self.url("inquiryRefund"), r).await
    }

    /// Which wallet issued a code (reads the acquirer's routing table; writes nothing).
    pub async fn code_issuer(
        &self,
        r: &CodeIssuerRequest,
    ) -> Result<CodeIssuerResponse, CallError> {
        self.lookup_client
            .post(&self.url("inquiryCodeIssuer"), r)
            .await
    }

    /// One line for a call that did not get through.
    pub fn explain(&self, e: &CallError) -> String {
        explain_call_error(e, "the acquirer", &self.base_url)
    }
}

/// One line for a failed call: what, why, what to do.
pub fn explain_call_error(e: &CallError, what: &str, base_url: &str) -> String {
    match e {
        CallError::NotDelivered(why) => format!(
            "cannot reach {what} at {base_url} ({why}); is `paycode serve` running with this --data-dir?"
        ),
        CallError::Unknown(why) if why.contains("signature") => format!(
            "{what} at {base_url} answered with a signature that does not verify ({why}); check acquirerPublicKey in demo.json"
        ),
        CallError::Unknown(why) => format!("no usable answer from {what} at {base_url} ({why})"),
    }
}

/// A new request id: a prefix, the time in milliseconds, the process id and a counter, so that
/// ids differ across calls, processes and restarts.
pub fn new_request_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = chrono::Utc::now().format("%Y%m%d%H%M%S%3f");
    format!("{prefix}-{now}-{}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, currency: &str, expect: Result<i64, &str>) {
        match (parse_amount(text, currency), expect) {
            (Ok(m), Ok(minor)) => assert_eq!(m.amount_minor(), minor, "{text} {currency}"),
            (Err(e), Err(part)) => {
                assert!(e.to_string().contains(part), "{text} {currency}: {e}")
            }
            (got, want) => panic!("{text} {currency}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn amounts_as_people_write_them_become_exact_minor_units() {
        check("12.50", "SGD", Ok(1250));
        check("12.5", "sgd", Ok(1250));
        check("1000", "JPY", Ok(1000));
        check("0.001", "KWD", Ok(1));
        check("7", "SGD", Ok(700));
    }

    #[test]
    fn wrong_decimals_are_errors_not_roundings() {
        check("12.505", "SGD", Err("SGD has 2 decimals at most"));
        check("1000.5", "JPY", Err("JPY has no decimals"));
        check("12,50", "SGD", Err("not a valid amount"));
        check("-5", "SGD", Err("not a valid amount"));
        check("0", "SGD", Err("more than zero"));
        check("1", "XYZ", Err("not a currency code"));
    }

    #[test]
    fn wire_amounts_are_shown_with_their_decimals() {
        assert_eq!(show_amount(&Amount::new("SGD", 1250)), "SGD 12.50");
        assert_eq!(show_amount(&Amount::new("JPY", 1000)), "JPY 1000");
        assert_eq!(show_amount(&Amount::new("CNY", -5)), "CNY -0.05");
        let odd = Amount {
            currency: "SGD".into(),
            value: "x".into(),
        };
        assert_eq!(show_amount(&odd), "SGD x (minor units)");
    }

    #[test]
    fn request_ids_are_unique_and_short() {
        let a = new_request_id("POS");
        let b = new_request_id("POS");
        assert_ne!(a, b);
        assert!(a.len() <= 64 && a.starts_with("POS-"));
    }
}
