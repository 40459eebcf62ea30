//! The acquirer ↔ wallet (MPP) protocol, SPEC §5. Every call is `POST` with a JSON body, signed
//! with the RSA256 scheme in both directions (each side has its own key pair; the caller's
//! `Client-Id` names it to the callee).
//!
//! | Direction | Path | Body → answer |
//! |---|---|---|
//! | acquirer → wallet | `/aps/api/v1/payments/pay` | [`PayRequest`] → [`PayResponse`] |
//! | acquirer → wallet | `/aps/api/v1/payments/inquiryPayment` | [`PaymentRef`] → [`InquiryResponse`] |
//! | acquirer → wallet | `/aps/api/v1/payments/cancelPayment` | [`PaymentRef`] → [`CancelResponse`] |
//! | acquirer → wallet | `/aps/api/v1/payments/refund` | [`RefundRequest`] → [`RefundResponse`] |
//! | wallet → acquirer | `/aps/api/v1/payments/notifyPayment` | [`NotifyPayment`] → [`crate::merchant::NotifyAck`] |
//! | wallet → acquirer | `/aps/api/v1/risk/reportCustomer` (paycode extension) | [`CustomerRiskReport`] → [`crate::merchant::NotifyAck`] |
//!
//! Semantics both sides rely on:
//! - `paymentRequestId` is the acquirer's payment id; the wallet is idempotent on it. A repeat
//!   with the same content returns the current state; different content → `F`
//!   `REPEAT_REQ_INCONSISTENT`.
//! - `pay` answers `S` `SUCCESS` (user debited), `F` with a SPEC §2.3 reason (nothing debited),
//!   or `U` `PAYMENT_IN_PROCESS` (a password challenge is pending). A transport failure means the
//!   outcome is unknown; the acquirer then asks with `inquiryPayment`.
//! - `inquiryPayment`: `result` is the inquiry's own outcome (`F` `ORDER_NOT_EXIST` if the wallet
//!   never saw the payment); `paymentResult` is the payment's state (`S`, `F`, or `U`).
//! - `cancelPayment` is idempotent and final: a pending payment becomes failed (`ORDER_IS_CLOSED`)
//!   and can no longer be confirmed; a paid one is reversed in full (user credited back); a
//!   payment the wallet never saw is recorded as cancelled so that a late `pay` with that id
//!   fails with `ORDER_IS_CLOSED`. Answer `S` with `cancelTime`, or `F` with a reason.
//! - `refund` is synchronous in the wallet currency, idempotent on `refundRequestId`.
//! - `notifyPayment` carries only final results (`S` or `F`, never `U`), is idempotent on
//!   `paymentRequestId`, and is retried by the wallet until the acquirer answers `S`.

use crate::{Amount, Quote, ResultInfo, merchant::Order};
use serde::{Deserialize, Serialize};

pub const PAY_PATH: &str = "/aps/api/v1/payments/pay";
pub const INQUIRY_PATH: &str = "/aps/api/v1/payments/inquiryPayment";
pub const CANCEL_PATH: &str = "/aps/api/v1/payments/cancelPayment";
pub const REFUND_PATH: &str = "/aps/api/v1/payments/refund";
pub const NOTIFY_PATH: &str = "/aps/api/v1/payments/notifyPayment";
/// A paycode extension: a wallet tells the acquirer to block (or clear) one of its customers.
pub const CUSTOMER_RISK_PATH: &str = "/aps/api/v1/risk/reportCustomer";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayRequest {
    /// The acquirer's payment id.
    pub payment_request_id: String,
    /// The amount in the transaction (merchant's) currency.
    pub payment_amount: Amount,
    /// The amount to debit, in the wallet's currency (fixed by `paymentQuote`).
    pub pay_to_amount: Amount,
    /// Present when the two currencies differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_quote: Option<Quote>,
    pub payment_method: crate::merchant::PaymentMethod,
    pub order: Order,
    /// ISO-8601; after this the wallet must not complete the payment.
    pub payment_expiry_time: String,
    /// Where the wallet sends `notifyPayment` (the acquirer's endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_notify_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_factor: Option<PaymentFactor>,
}

/// How the payment was made, and what the acquirer's risk check asks of the wallet.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFactor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_in_store_payment: Option<bool>,
    /// `PaymentCode` for user-presented mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_store_payment_scenario: Option<String>,
    /// A paycode extension: `true` when the acquirer's risk rules challenged the payment, so
    /// the wallet must ask the user for the password even under the password-free limits. A
    /// wallet that does not know the field ignores it (and so does not challenge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_verification_required: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayResponse {
    pub result: ResultInfo,
    /// The wallet's own id for the payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pay_to_amount: Option<Amount>,
    /// Pseudonymous id of the paying user at the wallet (never private data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRef {
    pub payment_request_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InquiryResponse {
    pub result: ResultInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_result: Option<ResultInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pay_to_amount: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelResponse {
    pub result: ResultInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_time: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundRequest {
    /// The acquirer's refund id.
    pub refund_request_id: String,
    /// The acquirer's payment id.
    pub payment_request_id: String,
    /// In the wallet's currency.
    pub refund_amount: Amount,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundResponse {
    pub result: ResultInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_amount: Option<Amount>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotifyPayment {
    pub payment_request_id: String,
    /// Final only: `S` or `F`.
    pub payment_result: ResultInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_time: Option<String>,
    /// Echo of what was debited (or would have been), for the acquirer's consistency check.
    pub pay_to_amount: Amount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
}

/// A wallet's report about one of its customers: `BLOCKED` (the acquirer's `BLOCKED_CUSTOMER`
/// rule refuses the customer's codes before any wallet call) or `CLEARED` (lifts a block this
/// wallet reported; an operator's block stays). Idempotent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerRiskReport {
    pub customer_id: String,
    pub risk_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
