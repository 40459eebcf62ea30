//! Stored rows → wire responses of the merchant API. The only place that decides how a payment
//! or refund looks to a merchant, so the synchronous answer, the inquiry and the notification
//! always agree.

use crate::store::{PaymentRow, RefundRow};
use paycode_core::payment::{PaymentState, RefundState};
use paycode_core::{ResultCode, ResultStatus};
use paycode_proto::merchant::{
    InquiryPaymentResponse, PayResponse, PspCustomerInfo, RefundResponse, Transaction,
};
use paycode_proto::{Amount, Quote, ResultInfo};

/// Milliseconds since the epoch as ISO-8601 in UTC.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

pub fn result(code: ResultCode, message: &str) -> ResultInfo {
    let message = if message.is_empty() {
        code.default_message()
    } else {
        message
    };
    ResultInfo::new(code.as_str(), code.status().as_str(), message)
}

/// The `result` of a pay answer (or notification) for a payment in its current state.
pub fn payment_result(p: &PaymentRow) -> ResultInfo {
    let state = p.state;
    match state {
        // While processing, the stored code says whether the wallet is waiting for the user
        // (PAYMENT_IN_PROCESS) or its answer was lost (UNKNOWN_EXCEPTION).
        PaymentState::Processing => match p.result_code {
            code if code.status() == ResultStatus::U => result(code, &p.result_message),
            _ => result(ResultCode::PAYMENT_IN_PROCESS, ""),
        },
        PaymentState::Fail(code) => result(code, &p.result_message),
        _ => result(state.result_code(), ""),
    }
}

fn quote(json: &Option<String>) -> Option<Quote> {
    json.as_deref().and_then(|j| serde_json::from_str(j).ok())
}

fn psp(p: &PaymentRow) -> PspCustomerInfo {
    PspCustomerInfo {
        psp_name: p.psp_name.clone(),
        psp_customer_id: p.psp_customer_id.clone(),
        display_customer_id: None,
    }
}

pub fn pay_response(p: &PaymentRow) -> PayResponse {
    let paid = p.state == PaymentState::Success || p.paid_ms.is_some();
    PayResponse {
        notify_type: None,
        result: Some(payment_result(p)),
        payment_request_id: Some(p.payment_request_id.clone()),
        payment_id: Some(p.payment_id.clone()),
        payment_amount: Some(Amount::new(&p.currency, p.amount_minor)),
        payment_create_time: Some(iso(p.created_ms)),
        payment_time: p.paid_ms.map(iso),
        actual_payment_amount: paid.then(|| Amount::new(&p.pay_to_currency, p.pay_to_minor)),
        payment_quote: quote(&p.payment_quote),
        gross_settlement_amount: paid.then(|| Amount::new(&p.settle_currency, p.settle_minor)),
        settlement_quote: quote(&p.settlement_quote),
        psp_customer_info: Some(psp(p)),
    }
}

/// Body of the `PAYMENT_RESULT` notification for a payment that reached a final state.
pub fn payment_notification(p: &PaymentRow) -> String {
    let mut body = pay_response(p);
    body.notify_type = Some("PAYMENT_RESULT".to_string());
    serde_json::to_string(&body).expect("wire types always serialize")
}

pub fn inquiry_response(p: &PaymentRow, refunds: &[RefundRow]) -> InquiryPaymentResponse {
    let state = p.state;
    let r = pay_response(p);
    let mut transactions: Vec<Transaction> = refunds
        .iter()
        .map(|rf| Transaction {
            transaction_type: "REFUND".into(),
            transaction_status: rf.state.status_str().into(),
            transaction_amount: Amount::new(&rf.currency, rf.amount_minor),
            transaction_id: rf.refund_id.clone(),
            transaction_request_id: Some(rf.refund_request_id.clone()),
            transaction_time: Some(iso(rf.refunded_ms.unwrap_or(rf.created_ms))),
            transaction_result: Some(result(rf.state.result_code(), &rf.result_message)),
        })
        .collect();
    if let Some(ms) = p.cancelled_ms {
        transactions.push(Transaction {
            transaction_type: "CANCEL".into(),
            transaction_status: "SUCCESS".into(),
            transaction_amount: Amount::new(&p.currency, p.amount_minor),
            // The same id as the CANCEL line of the settlement report.
            transaction_id: p.payment_id.clone(),
            transaction_request_id: None,
            transaction_time: Some(iso(ms)),
            transaction_result: Some(result(ResultCode::SUCCESS, "")),
        });
    }
    let result_info = payment_result(p);
    InquiryPaymentResponse {
        result: Some(result(ResultCode::SUCCESS, "")),
        payment_request_id: r.payment_request_id,
        payment_id: r.payment_id,
        payment_status: Some(state.status_str().to_string()),
        payment_result_code: Some(result_info.result_code),
        payment_result_message: Some(result_info.result_message),
        payment_amount: r.payment_amount,
        payment_create_time: r.payment_create_time,
        payment_time: r.payment_time,
        actual_payment_amount: r.actual_payment_amount,
        payment_quote: r.payment_quote,
        gross_settlement_amount: r.gross_settlement_amount,
        settlement_quote: r.settlement_quote,
        psp_customer_info: r.psp_customer_info,
        transactions: (!transactions.is_empty()).then_some(transactions),
    }
}

/// The answer to `refund` / `inquiryRefund`. For `refund` the `result` is the refund's outcome;
/// for `inquiryRefund` it is the inquiry's (see [`refund_inquiry_response`]).
pub fn refund_response(r: &RefundRow) -> RefundResponse {
    let state = r.state;
    let done = state == RefundState::Success;
    let message = match state {
        RefundState::Fail(_) => r.result_message.as_str(),
        RefundState::Processing => "refund is processing; retry with the same refundRequestId",
        RefundState::Success => "",
    };
    RefundResponse {
        notify_type: None,
        result: Some(result(state.result_code(), message)),
        refund_request_id: Some(r.refund_request_id.clone()),
        refund_id: Some(r.refund_id.clone()),
        payment_id: Some(r.payment_id.clone()),
        refund_status: None,
        refund_time: r.refunded_ms.map(iso),
        refund_amount: Some(Amount::new(&r.currency, r.amount_minor)),
        actual_refund_amount: done.then(|| Amount::new(&r.wallet_currency, r.wallet_amount_minor)),
        gross_settlement_amount: done.then(|| Amount::new(&r.settle_currency, r.settle_minor)),
        settlement_quote: None,
    }
}

pub fn refund_inquiry_response(r: &RefundRow) -> RefundResponse {
    let mut resp = refund_response(r);
    resp.result = Some(result(ResultCode::SUCCESS, ""));
    resp.refund_status = Some(r.state.status_str().to_string());
    resp
}

pub fn refund_notification(r: &RefundRow) -> String {
    let mut body = refund_response(r);
    body.notify_type = Some("REFUND_RESULT".to_string());
    body.refund_status = Some(r.state.status_str().to_string());
    serde_json::to_string(&body).expect("wire types always serialize")
}
