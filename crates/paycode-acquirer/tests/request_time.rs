//! `Request-Time` freshness over real HTTP (SPEC §2.1): every merchant operation and the
//! wallets' `notifyPayment` refuse a signed request whose time is stale, from the future,
//! unreadable or missing, in both the epoch-millisecond and the ISO-8601 form, and write
//! nothing for it — checked in the payments, refunds, ledger, outbox and the wallet balance. A
//! time at the edge of the window is accepted, and the exact bytes of a request replayed inside
//! the window are idempotent; outside it they are refused.

mod common;

use common::*;
use paycode_proto::mpp;
use serde_json::{Value, json};

/// The acquirer's default window, in milliseconds.
const WINDOW_MS: i64 = 300_000;
/// Beyond the window by far more than any request takes, so that time passing while the
/// request travels cannot bring it back inside.
const OUTSIDE_MS: i64 = WINDOW_MS + 60_000;

/// A signed request as bytes on the wire: sent as is, any number of times.
struct Raw {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Signs `body` for `path` as `client` with key `key_name`, with `time` as its `Request-Time`
/// (`None`: no such header, signed over an empty time).
fn signed(client: &str, key_name: &str, path: &str, time: Option<&str>, body: &Value) -> Raw {
    let body = serde_json::to_vec(body).unwrap();
    let sig =
        paycode_sign::sign(key(key_name), 1, path, client, time.unwrap_or(""), &body).unwrap();
    let mut headers = vec![
        ("Client-Id".to_string(), client.to_string()),
        ("Signature".to_string(), sig),
        (
            "Content-Type".to_string(),
            "application/json; charset=UTF-8".to_string(),
        ),
    ];
    if let Some(t) = time {
        headers.push(("Request-Time".to_string(), t.to_string()));
    }
    Raw {
        path: path.to_string(),
        headers,
        body,
    }
}

fn merchant_request(op: &str, time: Option<&str>, body: &Value) -> Raw {
    signed(
        CLIENT,
        "merchant",
        &format!("/ams/api/v1/payments/{op}"),
        time,
        body,
    )
}

/// Sends the exact bytes; the answer must be HTTP 200 and signed by the acquirer.
async fn send(h: &Harness, raw: &Raw) -> Value {
    let mut req = reqwest::Client::new()
        .post(format!("{}{}", h.url, raw.path))
        .body(raw.body.clone());
    for (k, v) in &raw.headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    paycode_http::verify_answer(&verify_key(), &headers, &raw.path, &bytes)
        .expect("every answer is signed");
    serde_json::from_slice(&bytes).unwrap()
}

fn iso(ms: i64) -> String {
    paycode_http::iso_of_ms(ms)
}

/// `ms` as ISO-8601 in Singapore time (`+08:00`), whole seconds (truncated: callers stay well
/// away from the edges).
fn iso_sg(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .with_timezone(&chrono_tz::Asia::Singapore)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// Every kind of bad `Request-Time`, in both forms, relative to the acquirer's `now_ms`:
/// (label, header value or `None` for no header).
fn bad_times(now_ms: i64) -> Vec<(&'static str, Option<String>)> {
    vec![
        ("stale epoch ms", Some((now_ms - OUTSIDE_MS).to_string())),
        ("future epoch ms", Some((now_ms + OUTSIDE_MS).to_string())),
        ("stale ISO-8601 Z", Some(iso(now_ms - OUTSIDE_MS))),
        ("future ISO-8601 +08:00", Some(iso_sg(now_ms + OUTSIDE_MS))),
        ("year 2001 epoch ms", Some("1000000000000".into())),
        ("year 2001 ISO-8601", Some("2001-01-01T00:00:00Z".into())),
        ("unreadable", Some("not-a-time".into())),
        ("no offset", Some("2026-12-01T08:00:00".into())),
        ("missing", None),
    ]
}

fn assert_refused(v: &Value, what: &str) {
    assert_eq!(code_of(v), "PARAM_ILLEGAL", "{what}: {v}");
    assert_eq!(status_of(v), "F", "{what}: {v}");
    let m = v["result"]["resultMessage"].as_str().unwrap_or("");
    assert!(
        m.contains("Request-Time"),
        "{what}: the message names the header: {m}"
    );
    assert!(
        m.contains("±300 s"),
        "{what}: the message names the window: {m}"
    );
}

async fn count(h: &Harness, sql: &'static str, arg: &str) -> i64 {
    h.sql_i64(sql, arg.to_string()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pay_with_a_bad_request_time_is_refused_and_nothing_is_written() {
    let h = Harness::new().await;
    let before = h.balance("alice").await;
    let code = h.code_for("alice").await;
    let body = h.pay_body("rt-pay", 650, &code);
    for (what, time) in bad_times(h.acq.clock().now_ms()) {
        let v = send(&h, &merchant_request("pay", time.as_deref(), &body)).await;
        assert_refused(&v, what);
        assert!(v.get("paymentId").is_none(), "{what}: no payment id: {v}");
        let inq = h
            .call("inquiryPayment", json!({"paymentRequestId": "rt-pay"}))
            .await;
        assert_eq!(code_of(&inq), "ORDER_NOT_EXIST", "{what}: {inq}");
    }
    assert_eq!(
        count(
            &h,
            "SELECT COUNT(*) FROM payments WHERE client_id = ?1",
            CLIENT
        )
        .await,
        0
    );
    assert_eq!(
        count(&h, "SELECT COUNT(*) FROM journal_entries WHERE ?1 = ?1", "").await,
        0
    );
    assert_eq!(
        count(&h, "SELECT COUNT(*) FROM outbox WHERE ?1 = ?1", "").await,
        0
    );
    assert_eq!(h.balance("alice").await, before, "no money moved");
    assert!(h.fake.calls().is_empty(), "no wallet was called");

    // The code was never used: the same pay with a fresh time is charged, once.
    let v = h.call("pay", body).await;
    assert_eq!(code_of(&v), "SUCCESS", "{v}");
    assert_eq!(h.balance("alice").await, before - 650);
    assert_eq!(
        count(&h, "SELECT COUNT(*) FROM journal_entries WHERE ?1 = ?1", "").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refund_with_a_bad_request_time_records_nothing_and_moves_no_money() {
    let h = Harness::new().await;
    let code = h.code_for("alice").await;
    let paid = h.call("pay", h.pay_body("rt-rf", 900, &code)).await;
    assert_eq!(code_of(&paid), "SUCCESS", "{paid}");
    let pid = paid["paymentId"].as_str().unwrap().to_string();
    let alice = h.balance("alice").await;
    let payable = format!("merchant_payable:{CLIENT}/{MERCHANT}:SGD");
    let balance_sql = "SELECT balance_minor FROM account_balances WHERE account = ?1";
    let merchant_before = count(&h, balance_sql, &payable).await;
    let refund = json!({"refundRequestId": "rt-refund-1", "paymentId": pid,
                        "refundAmount": {"currency": "SGD", "value": "400"}});
    for (what, time) in bad_times(h.acq.clock().now_ms()) {
        let v = send(&h, &merchant_request("refund", time.as_deref(), &refund)).await;
        assert_refused(&v, what);
        let inq = h
            .call("inquiryRefund", json!({"refundRequestId": "rt-refund-1"}))
            .await;
        assert_eq!(code_of(&inq), "ORDER_NOT_EXIST", "{what}: {inq}");
    }
    assert_eq!(
        count(
            &h,
            "SELECT COUNT(*) FROM refunds WHERE payment_id = ?1",
            &pid
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &h,
            "SELECT COUNT(*) FROM journal_entries WHERE payment_id = ?1",
            &pid
        )
        .await,
        1,
        "only the payment's entry"
    );
    assert_eq!(h.balance("alice").await, alice, "the user got nothing back");
    assert_eq!(count(&h, balance_sql, &payable).await, merchant_before);
    let inq = h.call("inquiryPayment", json!({"paymentId": pid})).await;
    assert_eq!(
        inq["transactions"].as_array().map_or(0, Vec::len),
        0,
        "{inq}"
    );

    // Nothing was reserved either: the whole amount can still be refunded.
    let v = h.call("refund", refund).await;
    assert_eq!(code_of(&v), "SUCCESS", "{v}");
    let rest = json!({"refundRequestId": "rt-refund-2", "paymentId": pid,
                      "refundAmount": {"currency": "SGD", "value": "500"}});
    assert_eq!(code_of(&h.call("refund", rest).await), "SUCCESS");
    assert_eq!(h.balance("alice").await, alice + 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_merchant_operation_checks_request_time() {
    let h = Harness::new().await;
    let paid = h
        .call("pay", h.pay_body("rt-ops", 300, &FakeWallet::code(31)))
        .await;
    assert_eq!(code_of(&paid), "SUCCESS", "{paid}");
    let pid = paid["paymentId"].as_str().unwrap().to_string();
    let quotes_sql = "SELECT COUNT(*) FROM quotes WHERE ?1 = ?1";
    let quotes_before = count(&h, quotes_sql, "").await;
    let ops = [
        ("pay", h.pay_body("rt-ops-2", 300, &FakeWallet::code(32))),
        ("inquiryPayment", json!({"paymentId": pid})),
        ("cancel", json!({"paymentId": pid})),
        (
            "refund",
            json!({"refundRequestId": "rt-ops-rf", "paymentId": pid,
                   "refundAmount": {"currency": "SGD", "value": "1"}}),
        ),
        ("inquiryRefund", json!({"refundRequestId": "rt-ops-rf"})),
        ("inquireExchangeRate", json!({"paymentCurrency": "SGD"})),
    ];
    let stale = (h.acq.clock().now_ms() - OUTSIDE_MS).to_string();
    for (op, body) in &ops {
        let v = send(&h, &merchant_request(op, Some(&stale), body)).await;
        assert_refused(&v, op);
        // The sandbox prefix is checked the same way.
        let raw = signed(
            CLIENT,
            "merchant",
            &format!("/ams/sandbox/api/v1/payments/{op}"),
            Some("not-a-time"),
            body,
        );
        assert_refused(&send(&h, &raw).await, op);
    }
    // Nothing changed: the payment is still paid, never cancelled or refunded, no new payment,
    // no quote given out, one wallet call (the first pay).
    let inq = h.call("inquiryPayment", json!({"paymentId": pid})).await;
    assert_eq!(inq["paymentStatus"], "SUCCESS", "{inq}");
    assert_eq!(
        inq["transactions"].as_array().map_or(0, Vec::len),
        0,
        "{inq}"
    );
    let inq = h
        .call("inquiryPayment", json!({"paymentRequestId": "rt-ops-2"}))
        .await;
    assert_eq!(code_of(&inq), "ORDER_NOT_EXIST");
    assert_eq!(count(&h, quotes_sql, "").await, quotes_before);
    assert_eq!(h.fake.calls(), vec![format!("pay {pid}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_sdk_time_forms_and_the_future_edge_of_the_window_are_accepted() {
    let h = Harness::new().await;
    let body = json!({"paymentRequestId": "none"});
    let now_ms = h.acq.clock().now_ms();
    let python_sdk = chrono::DateTime::from_timestamp(now_ms / 1000, 0)
        .unwrap()
        .to_rfc3339(); // what global-open-sdk-python 1.7.1 sends: 2026-12-01T08:12:57+00:00
    assert!(python_sdk.ends_with("+00:00") && !python_sdk.contains('.'));
    for time in [
        now_ms.to_string(),
        python_sdk,
        iso(now_ms),
        iso_sg(now_ms),
        // Exactly the window ahead: the acquirer's clock only moves towards it.
        (now_ms + WINDOW_MS).to_string(),
        iso(now_ms + WINDOW_MS),
    ] {
        let v = send(&h, &merchant_request("inquiryPayment", Some(&time), &body)).await;
        assert_eq!(code_of(&v), "ORDER_NOT_EXIST", "{time}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exact_replay_is_idempotent_inside_the_window_and_refused_after_it() {
    let h = Harness::new().await;
    let before = h.balance("alice").await;
    let code = h.code_for("alice").await;
    let now_ms = h.acq.clock().now_ms();
    let raw = merchant_request(
        "pay",
        Some(&now_ms.to_string()),
        &h.pay_body("rt-replay", 420, &code),
    );
    let first = send(&h, &raw).await;
    assert_eq!(code_of(&first), "SUCCESS", "{first}");
    let again = send(&h, &raw).await;
    assert_eq!(code_of(&again), "SUCCESS", "{again}");
    assert_eq!(again["paymentId"], first["paymentId"]);
    assert_eq!(h.balance("alice").await, before - 420, "charged once");
    let pid = first["paymentId"].as_str().unwrap().to_string();
    let entries = "SELECT COUNT(*) FROM journal_entries WHERE payment_id = ?1";
    assert_eq!(count(&h, entries, &pid).await, 1);

    // A captured refund replayed after the window: refused, nothing refunded.
    let refund = merchant_request(
        "refund",
        Some(&iso(h.acq.clock().now_ms())),
        &json!({"refundRequestId": "rt-replay-rf", "paymentId": pid,
                "refundAmount": {"currency": "SGD", "value": "420"}}),
    );
    h.acq.clock().advance_ms(WINDOW_MS + 1_000);
    assert_refused(&send(&h, &raw).await, "pay replayed late");
    assert_refused(&send(&h, &refund).await, "refund replayed late");
    assert_eq!(h.balance("alice").await, before - 420);
    assert_eq!(count(&h, entries, &pid).await, 1);
    assert_eq!(
        count(
            &h,
            "SELECT COUNT(*) FROM refunds WHERE payment_id = ?1",
            &pid
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wallet_notification_with_a_bad_request_time_leaves_the_payment_unchanged() {
    let h = Harness::new().await;
    h.fake.set_mode(PayMode::Pending);
    let r = h
        .call("pay", h.pay_body("rt-notify", 500, &FakeWallet::code(33)))
        .await;
    assert_eq!(code_of(&r), "PAYMENT_IN_PROCESS", "{r}");
    let pid = r["paymentId"].as_str().unwrap().to_string();
    let note = json!({
        "paymentRequestId": pid,
        "paymentResult": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"},
        "paymentId": "W-RT",
        "payToAmount": {"currency": "SGD", "value": "500"},
    });
    let notify = |time: Option<&str>| signed("fakepay", "fakepay", mpp::NOTIFY_PATH, time, &note);
    for (what, time) in bad_times(h.acq.clock().now_ms()) {
        assert_refused(&send(&h, &notify(time.as_deref())).await, what);
        let inq = h.call("inquiryPayment", json!({"paymentId": pid})).await;
        assert_eq!(inq["paymentStatus"], "PROCESSING", "{what}: {inq}");
    }
    let entries = "SELECT COUNT(*) FROM journal_entries WHERE payment_id = ?1";
    assert_eq!(count(&h, entries, &pid).await, 0);
    assert_eq!(
        count(
            &h,
            "SELECT COUNT(*) FROM outbox WHERE payment_id = ?1",
            &pid
        )
        .await,
        0
    );

    // The same notification, fresh, is the one that settles the payment.
    let fresh = notify(Some(&iso_sg(h.acq.clock().now_ms())));
    let v = send(&h, &fresh).await;
    assert_eq!(code_of(&v), "SUCCESS", "{v}");
    let inq = h.call("inquiryPayment", json!({"paymentId": pid})).await;
    assert_eq!(inq["paymentStatus"], "SUCCESS", "{inq}");
    assert_eq!(count(&h, entries, &pid).await, 1);
    // Replayed inside the window it changes nothing more.
    assert_eq!(code_of(&send(&h, &fresh).await), "SUCCESS");
    assert_eq!(count(&h, entries, &pid).await, 1);
}
