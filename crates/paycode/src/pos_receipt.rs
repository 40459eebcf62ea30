//! What the POS knows about one payment, gathered from the pay answer and later inquiries, and
//! the receipt it prints from that.
//!
//! The acquirer's answers are partial (a `U` pay answer carries no wallet amount yet), so
//! [`PaymentDetails`] keeps the latest non-empty value of each field.

use crate::tools_common::show_amount;
use paycode_proto::merchant::{InquiryPaymentResponse, PayResponse, Transaction};
use paycode_proto::{Amount, Quote};
use std::fmt::Write as _;

/// Who is charging: printed at the top of every receipt.
#[derive(Debug, Clone)]
pub struct Shop {
    pub merchant_name: String,
    pub reference_merchant_id: String,
    pub store_name: String,
    pub reference_store_id: String,
    pub terminal_id: String,
}

#[derive(Debug, Clone, Default)]
pub struct PaymentDetails {
    pub payment_request_id: String,
    pub payment_id: Option<String>,
    pub amount: Option<Amount>,
    pub wallet_name: Option<String>,
    pub wallet_amount: Option<Amount>,
    pub quote: Option<Quote>,
    pub create_time: Option<String>,
    pub payment_time: Option<String>,
    /// The last result code seen for the payment itself (not for an inquiry).
    pub result_code: Option<String>,
    pub result_message: Option<String>,
    pub transactions: Vec<Transaction>,
}

fn keep<T>(slot: &mut Option<T>, new: Option<T>) {
    if new.is_some() {
        *slot = new;
    }
}

impl PaymentDetails {
    pub fn new(payment_request_id: &str, amount: Amount) -> PaymentDetails {
        PaymentDetails {
            payment_request_id: payment_request_id.to_string(),
            amount: Some(amount),
            ..PaymentDetails::default()
        }
    }

    pub fn absorb_pay(&mut self, r: &PayResponse) {
        keep(&mut self.payment_id, r.payment_id.clone());
        keep(&mut self.amount, r.payment_amount.clone());
        keep(&mut self.wallet_amount, r.actual_payment_amount.clone());
        keep(&mut self.quote, r.payment_quote.clone());
        keep(&mut self.create_time, r.payment_create_time.clone());
        keep(&mut self.payment_time, r.payment_time.clone());
        keep(
            &mut self.wallet_name,
            r.psp_customer_info.as_ref().map(|p| p.psp_name.clone()),
        );
        if let Some(result) = &r.result {
            self.result_code = Some(result.result_code.clone());
            self.result_message = Some(result.result_message.clone());
        }
    }

    pub fn absorb_inquiry(&mut self, r: &InquiryPaymentResponse) {
        if !r.result.as_ref().is_some_and(|x| x.is_success()) {
            return;
        }
        keep(&mut self.payment_id, r.payment_id.clone());
        keep(&mut self.amount, r.payment_amount.clone());
        keep(&mut self.wallet_amount, r.actual_payment_amount.clone());
        keep(&mut self.quote, r.payment_quote.clone());
        keep(&mut self.create_time, r.payment_create_time.clone());
        keep(&mut self.payment_time, r.payment_time.clone());
        keep(
            &mut self.wallet_name,
            r.psp_customer_info.as_ref().map(|p| p.psp_name.clone()),
        );
        keep(&mut self.result_code, r.payment_result_code.clone());
        keep(&mut self.result_message, r.payment_result_message.clone());
        if let Some(t) = &r.transactions {
            self.transactions = t.clone();
        }
    }
}

/// What the customer is told to do next, for the failures a cashier meets.
pub fn hint_for(code: &str) -> Option<&'static str> {
    Some(match code {
        "EXPIRED_CODE" => {
            "codes are single use and valid about a minute: ask the customer to show a fresh code"
        }
        "INVALID_CODE" => {
            "this is not a payment code of a connected wallet: scan again or type the digits"
        }
        "REQUEST_TRAFFIC_EXCEED_LIMIT" => {
            "too many invalid codes were sent from here: nothing was charged; wait and try again"
        }
        "USER_BALANCE_NOT_ENOUGH" => {
            "the customer's balance is too low: ask for another payment method"
        }
        "USER_AMOUNT_EXCEED_LIMIT" | "PAYMENT_AMOUNT_EXCEED_LIMIT" => {
            "the amount is over a limit: ask for another payment method or a smaller amount"
        }
        "USER_STATUS_ABNORMAL" => {
            "the customer's wallet account is frozen: ask for another payment method"
        }
        "USER_DECLINED" => "the customer declined on the phone",
        "USER_PAYMENT_VERIFICATION_FAILED" => {
            "the customer declined or entered a wrong password too often"
        }
        "ORDER_IS_CLOSED" => {
            "the customer did not confirm in time and the payment was closed: charge again"
        }
        "SIGNATURE_INVALID" | "KEY_NOT_FOUND" | "CLIENT_INVALID" => {
            "the acquirer does not accept this merchant's credentials: check clientId and merchantPrivateKey in demo.json"
        }
        "CURRENCY_NOT_SUPPORT" => "this currency is not contracted for the merchant or the wallet",
        "REPEAT_REQ_INCONSISTENT" => {
            "this request id was already used for a different payment: use a new one"
        }
        _ => return None,
    })
}

/// `1 SGD = 5.37 CNY` from the pair `SGD/CNY` and its price.
pub fn show_rate(pair: &str, price: &str) -> String {
    match pair.split_once('/') {
        Some((base, quote)) => format!("1 {base} = {price} {quote}"),
        None => format!("{price} ({pair})"),
    }
}

/// The receipt text. `status_line` is the final word (`PAID`, `FAILED …`, `CANCELLED`, …).
pub fn format_receipt(shop: &Shop, d: &PaymentDetails, status_line: &str, now_iso: &str) -> String {
    let mut out = String::new();
    let rule = "-".repeat(44);
    let row = |out: &mut String, k: &str, v: &str| {
        let _ = writeln!(out, "{k:<16}{v}");
    };
    let _ = writeln!(out, "{rule}");
    let _ = writeln!(out, "{}", shop.merchant_name);
    row(&mut out, "Merchant", &shop.reference_merchant_id);
    row(
        &mut out,
        "Store",
        &format!("{} ({})", shop.store_name, shop.reference_store_id),
    );
    row(&mut out, "Terminal", &shop.terminal_id);
    let _ = writeln!(out, "{rule}");
    if let Some(a) = &d.amount {
        row(&mut out, "Amount", &show_amount(a));
    }
    if let Some(w) = &d.wallet_name {
        row(&mut out, "Wallet", w);
    }
    if let Some(a) = &d.wallet_amount {
        row(&mut out, "Wallet amount", &show_amount(a));
    }
    if let Some(q) = &d.quote {
        row(
            &mut out,
            "Rate",
            &show_rate(&q.quote_currency_pair, &q.quote_price),
        );
    }
    row(
        &mut out,
        "Payment id",
        d.payment_id.as_deref().unwrap_or("(not assigned)"),
    );
    row(&mut out, "Request id", &d.payment_request_id);
    row(
        &mut out,
        "Time",
        d.payment_time
            .as_deref()
            .or(d.create_time.as_deref())
            .unwrap_or(now_iso),
    );
    for t in &d.transactions {
        row(
            &mut out,
            &format!("{} ", t.transaction_type),
            &format!(
                "{} {} {}",
                show_amount(&t.transaction_amount),
                t.transaction_status,
                t.transaction_id
            ),
        );
    }
    let _ = writeln!(out, "{rule}");
    row(&mut out, "Status", status_line);
    let _ = writeln!(out, "{rule}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use paycode_proto::ResultInfo;
    use paycode_proto::merchant::PspCustomerInfo;

    fn shop() -> Shop {
        Shop {
            merchant_name: "Kopi Corner".into(),
            reference_merchant_id: "M001".into(),
            store_name: "Orchard".into(),
            reference_store_id: "S001".into(),
            terminal_id: "POS-01".into(),
        }
    }

    #[test]
    fn receipt_shows_every_field_a_customer_asks_about() {
        let mut d = PaymentDetails::new("POS-1", Amount::new("SGD", 1250));
        d.absorb_pay(&PayResponse {
            result: Some(ResultInfo::success()),
            payment_id: Some("P123".into()),
            payment_time: Some("2026-01-02T03:04:05.000Z".into()),
            actual_payment_amount: Some(Amount::new("CNY", 6712)),
            payment_quote: Some(Quote {
                quote_id: "Q1".into(),
                quote_currency_pair: "SGD/CNY".into(),
                quote_price: "5.37".into(),
                quote_start_time: None,
                quote_expiry_time: None,
                guaranteed: true,
            }),
            psp_customer_info: Some(PspCustomerInfo {
                psp_name: "cnpay".into(),
                ..Default::default()
            }),
            ..PayResponse::default()
        });
        let text = format_receipt(&shop(), &d, "PAID", "now");
        for part in [
            "Kopi Corner",
            "Orchard (S001)",
            "POS-01",
            "SGD 12.50",
            "cnpay",
            "CNY 67.12",
            "1 SGD = 5.37 CNY",
            "P123",
            "POS-1",
            "2026-01-02T03:04:05.000Z",
            "PAID",
        ] {
            assert!(text.contains(part), "missing {part:?} in\n{text}");
        }
    }

    #[test]
    fn later_partial_answers_do_not_erase_what_is_known() {
        let mut d = PaymentDetails::new("POS-1", Amount::new("SGD", 1250));
        d.absorb_pay(&PayResponse {
            result: Some(ResultInfo::new("PAYMENT_IN_PROCESS", "U", "waiting")),
            payment_id: Some("P9".into()),
            ..PayResponse::default()
        });
        d.absorb_inquiry(&InquiryPaymentResponse {
            result: Some(ResultInfo::success()),
            payment_status: Some("SUCCESS".into()),
            payment_result_code: Some("SUCCESS".into()),
            ..InquiryPaymentResponse::default()
        });
        assert_eq!(d.payment_id.as_deref(), Some("P9"));
        assert_eq!(d.result_code.as_deref(), Some("SUCCESS"));
        // A failed inquiry teaches nothing.
        d.absorb_inquiry(&InquiryPaymentResponse {
            result: Some(ResultInfo::new("ORDER_NOT_EXIST", "F", "")),
            payment_id: Some("other".into()),
            ..InquiryPaymentResponse::default()
        });
        assert_eq!(d.payment_id.as_deref(), Some("P9"));
    }

    #[test]
    fn common_failures_have_a_hint() {
        assert!(hint_for("EXPIRED_CODE").unwrap().contains("fresh code"));
        assert!(hint_for("SUCCESS").is_none());
    }
}
