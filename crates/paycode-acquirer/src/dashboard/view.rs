//! Rows as the pages show them: amounts in their currency's minor units, times in the viewer's
//! zone with the zone named.

use crate::store::{PaymentRow, RefundRow};
use chrono::TimeZone;
use paycode_core::{Currency, Money};
use serde_json::{Value, json};

/// `123456789, "SGD"` → `1,234,567.89 SGD`; an unknown currency shows the minor units as
/// they are.
pub fn money(amount_minor: i64, currency: &str) -> String {
    match Currency::parse(currency) {
        Ok(c) => format!(
            "{} {}",
            group_thousands(&Money::new(amount_minor, c).to_decimal_string()),
            c.code()
        ),
        Err(_) => format!("{amount_minor} (minor units) {currency}"),
    }
}

/// `-1234567.89` → `-1,234,567.89`.
fn group_thousands(decimal: &str) -> String {
    let (sign, rest) = match decimal.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", decimal),
    };
    let (int, frac) = rest
        .split_once('.')
        .map_or((rest, None), |(i, f)| (i, Some(f)));
    let mut grouped = String::with_capacity(int.len() + int.len() / 3);
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
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

#[cfg(test)]
mod tests {
    #[test]
    fn amounts_are_shown_in_their_currency_with_thousands_grouped() {
        for (minor, cur, shown) in [
            (0, "SGD", "0.00 SGD"),
            (5, "SGD", "0.05 SGD"),
            (-5, "SGD", "-0.05 SGD"),
            (123_456_789, "SGD", "1,234,567.89 SGD"),
            (-100_000, "SGD", "-1,000.00 SGD"),
            (611_571_528, "JPY", "611,571,528 JPY"),
            (999, "JPY", "999 JPY"),
            (1_000, "KRW", "1,000 KRW"),
            (1_234_567, "BHD", "1,234.567 BHD"),
        ] {
            assert_eq!(super::money(minor, cur), shown);
        }
    }
}
