//! The merchant API (SPEC §2): `POST /ams/api/v1/payments/{pay,inquiryPayment,cancel,refund,
//! inquiryRefund,inquireExchangeRate,inquiryCodeIssuer}`, also under `/ams/sandbox/api/v1/…`.
//!
//! Requests ignore unknown fields (the SDKs send many optional ones).
//!
//! `inquiryCodeIssuer` is paycode's own addition (SPEC §4.2, "which wallet is this code?"): a
//! POS asks it after scanning and before `pay`, to tell the cashier which wallet the customer
//! pays with. It is signed and answered exactly like the other endpoints, with the merchant's
//! own client id and key. It reads only the routing table and writes nothing: request
//! [`CodeIssuerRequest`], answer [`CodeIssuerResponse`] with `SUCCESS`, or `INVALID_CODE` (with
//! the same message `pay` would give) for a malformed code or an unknown or disabled issuer.

use crate::{Amount, Quote, ResultInfo, lenient_opt_string, lenient_string};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayRequest {
    pub product_code: String,
    #[serde(deserialize_with = "lenient_string")]
    pub payment_request_id: String,
    pub payment_amount: Amount,
    pub payment_method: PaymentMethod,
    pub order: Order,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_factor: Option<PaymentFactor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_notify_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_expiry_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_strategy: Option<SettlementStrategy>,
    #[serde(
        default,
        deserialize_with = "lenient_opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub merchant_account_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentMethod {
    pub payment_method_type: String,
    #[serde(deserialize_with = "lenient_string")]
    pub payment_method_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFactor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_store_payment_scenario: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlementStrategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_currency: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    #[serde(
        default,
        deserialize_with = "lenient_opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub reference_order_id: Option<String>,
    #[serde(default)]
    pub order_description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_amount: Option<Amount>,
    pub merchant: Merchant,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Env>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Merchant {
    #[serde(deserialize_with = "lenient_string")]
    pub reference_merchant_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_name: Option<String>,
    #[serde(
        rename = "merchantMCC",
        default,
        deserialize_with = "lenient_opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub merchant_mcc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<Store>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Store {
    #[serde(deserialize_with = "lenient_string")]
    pub reference_store_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_name: Option<String>,
    #[serde(
        rename = "storeMCC",
        default,
        deserialize_with = "lenient_opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub store_mcc: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Env {
    #[serde(
        default,
        deserialize_with = "lenient_opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub store_terminal_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_terminal_request_time: Option<String>,
}

/// Which wallet paid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PspCustomerInfo {
    pub psp_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psp_customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_customer_id: Option<String>,
}

/// Response of `pay`; also the body of a `PAYMENT_RESULT` notification (with `notifyType`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_type: Option<String>,
    pub result: Option<ResultInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_amount: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_create_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_payment_amount: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_quote: Option<Quote>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gross_settlement_amount: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_quote: Option<Quote>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psp_customer_info: Option<PspCustomerInfo>,
}

/// Request of `inquiryPayment` and `cancel`: `paymentId` wins if both are given.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRef {
    #[serde(
        default,
        deserialize_with = "lenient_opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub payment_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient_opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub payment_request_id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InquiryPaymentResponse {
    pub result: Option<ResultInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    /// `SUCCESS`, `FAIL`, `PROCESSING`, `CANCELLED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_result_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_result_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_amount: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_create_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_payment_amount: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_quote: Option<Quote>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gross_settlement_amount: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_quote: Option<Quote>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psp_customer_info: Option<PspCustomerInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactions: Option<Vec<Transaction>>,
}

/// A refund or cancel listed under a payment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    /// `REFUND` or `CANCEL`.
    pub transaction_type: String,
    /// `SUCCESS`, `FAIL` or `PROCESSING`.
    pub transaction_status: String,
    pub transaction_amount: Amount,
    pub transaction_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_result: Option<ResultInfo>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelResponse {
    pub result: Option<ResultInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_time: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundRequest {
    #[serde(deserialize_with = "lenient_string")]
    pub refund_request_id: String,
    #[serde(deserialize_with = "lenient_string")]
    pub payment_id: String,
    pub refund_amount: Amount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_notify_url: Option<String>,
}

/// Response of `refund` and `inquiryRefund`, and body of a `REFUND_RESULT` notification.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_type: Option<String>,
    pub result: Option<ResultInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    /// `SUCCESS`, `FAIL`, `PROCESSING` (inquiryRefund only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_amount: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_refund_amount: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gross_settlement_amount: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_quote: Option<Quote>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InquiryRefundRequest {
    #[serde(
        default,
        deserialize_with = "lenient_opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub refund_request_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient_opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub refund_id: Option<String>,
}

/// Request of `inquiryCodeIssuer`: the scanned code, as `pay` would send it in
/// `paymentMethod.paymentMethodId`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeIssuerRequest {
    #[serde(deserialize_with = "lenient_string")]
    pub payment_code: String,
}

/// Answer of `inquiryCodeIssuer`. On `SUCCESS`, the wallet that issued the code: `pspName` is
/// the name `pay` reports in `pspCustomerInfo.pspName`, `walletName` the routing table's id of
/// the wallet. The code itself is never echoed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeIssuerResponse {
    pub result: Option<ResultInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psp_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet_name: Option<String>,
}

/// The body every notification receiver answers with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotifyAck {
    pub result: ResultInfo,
}
