//! Rows as the pages show them: amounts in their currency's minor units, times in the viewer's
//! zone with the zone named.

use crate::store::{PaymentRow, RefundRow};
use chrono::TimeZone;
use paycode_core::{Currency, Money};
use serde_json::{Value, json};

/// `1234, "SGD"` → `12.34 SGD`; an unknown currency shows the minor units as they are.
pub fn money(amount_minor: i64, currency: &str) -> String {
    match Currency::parse(currency) {
        Ok(c) => format!(
            "{} {}",
            Money::new(amount_minor, c).to_decimal_string(),
            c.code()
        ),
        Err(_) => format!("{amount_minor} (minor units) {currency}"),
    }
}

/// A time in `zone`: `2026-12-01 19:45:03 SGT`.
pub fn time(ms: i64, zone: chrono_tz::Tz) -> String {
    match zone.timestamp_millis_opt(ms).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S %Z").to_string(),
        None => ms.to_string(),
    }
}

pub fn payment(p: &PaymentRow, zone: chrono_tz::Tz) -> Value {
    json!({
        "id": p.payment_id, "requestId": p.payment_request_id, "clientId": p.client_id,
        "merchantId": p.reference_merchant_id, "merchantName": p.merchant_name,
        "storeId": p.reference_store_id, "storeName": p.store_name, "terminalId": p.terminal_id,
        "amount": money(p.amount_minor, &p.currency), "currency": p.currency,
        "payTo": money(p.pay_to_minor, &p.pay_to_currency),
        "settle": money(p.settle_minor, &p.settle_currency),
        "fee": money(p.fee_minor, &p.settle_currency),
        "wallet": p.wallet, "psp": p.psp_name, "code": p.code_masked,
        "status": p.state.status_str(), "resultCode": p.result_code.as_str(),
        "resultMessage": p.result_message, "customerId": p.psp_customer_id,
        "walletPaymentId": p.wallet_payment_id,
        "created": time(p.created_ms, zone), "paid": p.paid_ms.map(|t| time(t, zone)),
        "cancelled": p.cancelled_ms.map(|t| time(t, zone)),
        "expires": time(p.expires_ms, zone),
    })
}

pub fn refund(r: &RefundRow, zone: chrono_tz::Tz) -> Value {
    let status = r.state.status_str();
    json!({
        "id": r.refund_id, "requestId": r.refund_request_id, "paymentId": r.payment_id,
        "amount": money(r.amount_minor, &r.currency),
        "walletAmount": money(r.wallet_amount_minor, &r.wallet_currency),
        "settle": money(r.settle_minor, &r.settle_currency), "status": status,
        "resultCode": r.result_code.as_str(), "reason": r.reason,
        "created": time(r.created_ms, zone), "refunded": r.refunded_ms.map(|t| time(t, zone)),
    })
}

/// A stored quote (wire JSON), as the payment page shows it.
pub fn quote(stored: Option<&str>) -> Option<Value> {
    let q: paycode_proto::Quote = serde_json::from_str(stored?).ok()?;
    Some(json!({
        "id": q.quote_id, "pair": q.quote_currency_pair, "price": q.quote_price,
        "start": q.quote_start_time, "expiry": q.quote_expiry_time,
    }))
}
