//! The merchant API over real HTTP: every endpoint, every result code the acquirer produces
//! itself, idempotency and races, wallet faults and reconciliation, notifications, and hostile
//! requests. Outcomes are checked in the state, the wallet balance, the ledger and the outbox.

mod common;

use common::*;
use paycode_acquirer::Limits;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pay_inquire_refund_cancel_with_the_real_wallet() {
    let h = Harness::new().await;
    let before = h.balance("alice").await;
    let code = h.code_for("alice").await;
    let rx = Receiver::start(0).await;
    let mut body = h.pay_body("r-1", 1250, &code);
    body["paymentNotifyUrl"] = json!(rx.url);
    let paid = h.call("pay", body).await;
    assert_eq!(code_of(&paid), "SUCCESS", "{paid}");
    assert_eq!(
        paid["actualPaymentAmount"],
        json!({"currency": "SGD", "value": "1250"})
    );
    assert_eq!(paid["pspCustomerInfo"]["pspName"], "sgpay");
    let pid = paid["paymentId"].as_str().unwrap().to_string();
    assert_eq!(h.balance("alice").await, before - 1250);

    let inq = h
        .call("inquiryPayment", json!({"paymentRequestId": "r-1"}))
        .await;
    assert_eq!(inq["paymentStatus"], "SUCCESS");
    assert_eq!(inq["paymentId"], pid.as_str());

    // One journal entry: wallet receivable debited, merchant payable credited.
    let entries = h
        .sql_i64(
            "SELECT COUNT(*) FROM journal_entries WHERE payment_id = ?1",
            pid.clone(),
        )
        .await;
    assert_eq!(entries, 1);

    // The notification is delivered and signed like a request over the notify URL's path.
    h.drain().await;
    assert_eq!(rx.count(), 1);
    let (headers, path, raw) = rx.state.bodies.lock().unwrap()[0].clone();
    let n: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(n["notifyType"], "PAYMENT_RESULT");
    assert_eq!(n["paymentId"], pid.as_str());
    let sig = paycode_sign::SignatureHeader::parse(headers["signature"].to_str().unwrap()).unwrap();
    paycode_sign::verify(
        &verify_key(),
        &sig,
        &path,
        headers["client-id"].to_str().unwrap(),
        headers["request-time"].to_str().unwrap(),
        raw.as_bytes(),
    )
    .expect("notification signature verifies");

    // Partial refunds up to the paid amount, then REFUND_AMOUNT_EXCEED.
    let r1 = h
        .call("refund", json!({"refundRequestId": "rf-1", "paymentId": pid, "refundAmount": {"currency": "SGD", "value": "1000"}}))
        .await;
    assert_eq!(code_of(&r1), "SUCCESS", "{r1}");
    assert_eq!(r1["actualRefundAmount"]["value"], "1000");
    let over = h
        .call("refund", json!({"refundRequestId": "rf-2", "paymentId": pid, "refundAmount": {"currency": "SGD", "value": "251"}}))
        .await;
    assert_eq!(code_of(&over), "REFUND_AMOUNT_EXCEED");
    let rest = h
        .call("refund", json!({"refundRequestId": "rf-3", "paymentId": pid, "refundAmount": {"currency": "SGD", "value": "250"}}))
        .await;
    assert_eq!(code_of(&rest), "SUCCESS");
    assert_eq!(h.balance("alice").await, before);
    let again = h
        .call("refund", json!({"refundRequestId": "rf-1", "paymentId": pid, "refundAmount": {"currency": "SGD", "value": "999"}}))
        .await;
    assert_eq!(code_of(&again), "REPEAT_REQ_INCONSISTENT");
    let inq_refund = h
        .call("inquiryRefund", json!({"refundRequestId": "rf-1"}))
        .await;
    assert_eq!(inq_refund["refundStatus"], "SUCCESS");
    let inq = h.call("inquiryPayment", json!({"paymentId": pid})).await;
    assert_eq!(inq["transactions"].as_array().unwrap().len(), 2);

    // A refunded payment can no longer be cancelled.
    let c = h.call("cancel", json!({"paymentId": pid})).await;
    assert_eq!(code_of(&c), "PROCESS_FAIL");

    // Merchant payable for this merchant nets to zero after full refund.
    let bal = h
        .sql_i64(
            "SELECT balance_minor FROM account_balances WHERE account = ?1",
            format!("merchant_payable:{CLIENT}/{MERCHANT}:SGD"),
        )
        .await;
    assert_eq!(bal, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_reverses_a_paid_payment_in_full_and_is_idempotent() {
    let h = Harness::new().await;
    let before = h.balance("alice").await;
    let code = h.code_for("alice").await;
    let paid = h.call("pay", h.pay_body("c-1", 700, &code)).await;
    assert_eq!(code_of(&paid), "SUCCESS");
    for _ in 0..2 {
        let c = h.call("cancel", json!({"paymentRequestId": "c-1"})).await;
        assert_eq!(code_of(&c), "SUCCESS", "{c}");
        assert!(c["cancelTime"].is_string());
    }
    assert_eq!(h.balance("alice").await, before);
    let inq = h
        .call("inquiryPayment", json!({"paymentRequestId": "c-1"}))
        .await;
    assert_eq!(inq["paymentStatus"], "CANCELLED");
    let pid = paid["paymentId"].as_str().unwrap().to_string();
    assert_eq!(
        h.sql_i64(
            "SELECT COUNT(*) FROM journal_entries WHERE payment_id = ?1",
            pid.clone()
        )
        .await,
        2
    );
    let refund = h
        .call("refund", json!({"refundRequestId": "x", "paymentId": pid, "refundAmount": {"currency": "SGD", "value": "1"}}))
        .await;
    assert_eq!(code_of(&refund), "ORDER_STATUS_INVALID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cancel_window_closes_at_a_quarter_past_midnight_next_day() {
    let h = Harness::new().await;
    let code = h.code_for("alice").await;
    let paid = h.call("pay", h.pay_body("w-1", 500, &code)).await;
    assert_eq!(code_of(&paid), "SUCCESS");
    h.acq.clock().advance_ms(2 * 86_400_000);
    let c = h.call("cancel", json!({"paymentRequestId": "w-1"})).await;
    assert_eq!(code_of(&c), "CANCEL_WINDOW_EXCEED");
    assert_eq!(status_of(&c), "F");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wallet_failures_reach_the_merchant_with_their_codes() {
    let h = Harness::new().await;
    let cases = [
        ("carol", 10_000, "USER_BALANCE_NOT_ENOUGH"),
        ("dave", 100, "USER_STATUS_ABNORMAL"),
    ];
    for (i, (user, value, expect)) in cases.into_iter().enumerate() {
        let code = h.code_for(user).await;
        let r = h
            .call("pay", h.pay_body(&format!("f-{i}"), value, &code))
            .await;
        assert_eq!(code_of(&r), expect, "{r}");
        assert_eq!(status_of(&r), "F");
        let inq = h
            .call(
                "inquiryPayment",
                json!({"paymentRequestId": format!("f-{i}")}),
            )
            .await;
        assert_eq!(inq["paymentStatus"], "FAIL");
        assert_eq!(inq["paymentResultCode"], expect);
    }
    // A used code is single use, even after a failed payment.
    let code = h.code_for("carol").await;
    let r = h.call("pay", h.pay_body("f-a", 10_000, &code)).await;
    assert_eq!(code_of(&r), "USER_BALANCE_NOT_ENOUGH");
    let r = h.call("pay", h.pay_body("f-b", 100, &code)).await;
    assert_eq!(code_of(&r), "EXPIRED_CODE", "{r}");
    assert_eq!(
        h.sql_i64(
            "SELECT COUNT(*) FROM journal_entries WHERE ?1 = ?1",
            String::new()
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acquirer_result_codes() {
    let h = Harness::new().await;
    let code = FakeWallet::code(1);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = h.pay_body("rc", 100, &code);
        f(&mut b);
        b
    };
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            with(&|b| b["order"]["merchant"]["referenceMerchantId"] = json!("NOPE")),
            "MERCHANT_NOT_REGISTERED",
            "",
        ),
        (
            with(&|b| b["order"]["merchant"]["referenceMerchantId"] = json!("SUSPENDED")),
            "INVALID_MERCHANT_STATUS",
            "",
        ),
        (
            with(&|b| b["paymentAmount"]["currency"] = json!("USD")),
            "CURRENCY_NOT_SUPPORT",
            "",
        ),
        (
            with(&|b| b["paymentAmount"]["value"] = json!("2000000")),
            "PAYMENT_AMOUNT_EXCEED_LIMIT",
            "",
        ),
        (
            with(&|b| b["paymentMethod"]["paymentMethodId"] = json!("777777021234567890123456")),
            "INVALID_CODE",
            "",
        ),
        (
            with(&|b| b["paymentMethod"]["paymentMethodId"] = json!("12345")),
            "INVALID_CODE",
            "paymentMethodId",
        ),
        (
            with(&|b| b["paymentAmount"]["value"] = json!("0")),
            "PARAM_ILLEGAL",
            "paymentAmount.value",
        ),
        (
            with(&|b| b["paymentAmount"]["value"] = json!("12.5")),
            "PARAM_ILLEGAL",
            "paymentAmount.value",
        ),
        (
            with(&|b| b["paymentAmount"]["currency"] = json!("XYZ")),
            "PARAM_ILLEGAL",
            "paymentAmount.currency",
        ),
        (
            with(&|b| b["productCode"] = json!("CASHIER_PAYMENT")),
            "PARAM_ILLEGAL",
            "productCode",
        ),
        (
            with(&|b| b["paymentRequestId"] = json!("x".repeat(65))),
            "PARAM_ILLEGAL",
            "paymentRequestId",
        ),
        (
            with(&|b| b["paymentExpiryTime"] = json!("yesterday")),
            "PARAM_ILLEGAL",
            "paymentExpiryTime",
        ),
        (
            with(&|b| {
                b.as_object_mut().unwrap().remove("paymentAmount");
            }),
            "PARAM_ILLEGAL",
            "paymentAmount",
        ),
        (
            with(&|b| b["paymentAmount"]["value"] = json!(["1"])),
            "PARAM_ILLEGAL",
            "paymentAmount.value",
        ),
    ];
    for (body, expect, field) in cases {
        let r = h.call("pay", body.clone()).await;
        assert_eq!(code_of(&r), expect, "{body} -> {r}");
        assert_eq!(status_of(&r), "F");
        assert!(
            r["result"]["resultMessage"]
                .as_str()
                .unwrap()
                .contains(field),
            "{r}"
        );
    }
    assert!(
        h.fake.calls().is_empty(),
        "no wallet was called for a refused request"
    );

    // Numbers where strings are documented are accepted.
    let mut b = h.pay_body("num", 100, &code);
    b["paymentAmount"]["value"] = json!(100);
    let r = h.call("pay", b).await;
    assert_eq!(code_of(&r), "SUCCESS", "{r}");
    assert_eq!(r["paymentAmount"]["value"], "100");

    // Unknown payments, other clients' payments.
    let r = h
        .call("inquiryPayment", json!({"paymentRequestId": "nope"}))
        .await;
    assert_eq!(code_of(&r), "ORDER_NOT_EXIST");
    let pid = r["paymentId"].clone();
    assert!(pid.is_null());
    let mine = h
        .call("inquiryPayment", json!({"paymentRequestId": "num"}))
        .await;
    // Another client's payment or refund is answered exactly as an id that does not exist, for
    // every operation, and nothing is written (SPEC §11).
    let my_refund = h.call("refund", json!({"refundRequestId": "mine-1", "paymentId": mine["paymentId"], "refundAmount": {"currency": "SGD", "value": "1"}})).await;
    assert_eq!(code_of(&my_refund), "SUCCESS", "{my_refund}");
    let calls_before = h.fake.calls().len();
    let probes = |id: &Value, refund_id: &Value| {
        [
            ("inquiryPayment", json!({"paymentId": id})),
            ("cancel", json!({"paymentId": id})),
            (
                "refund",
                json!({"refundRequestId": "probe", "paymentId": id, "refundAmount": {"currency": "SGD", "value": "1"}}),
            ),
            ("inquiryRefund", json!({"refundId": refund_id})),
        ]
    };
    let absent = json!("20991231000000000000nope");
    for ((op, foreign), (_, missing)) in probes(&mine["paymentId"], &my_refund["refundId"])
        .into_iter()
        .zip(probes(&absent, &absent))
    {
        let theirs = h.call_as(&h.other, op, foreign).await;
        let none = h.call_as(&h.other, op, missing).await;
        assert_eq!(code_of(&theirs), "ORDER_NOT_EXIST", "{op}: {theirs}");
        assert_eq!(
            theirs, none,
            "{op}: a foreign id answers like a missing one"
        );
    }
    assert_eq!(
        h.fake.calls().len(),
        calls_before,
        "no wallet call for another client's ids"
    );
    let after = h
        .call("inquiryPayment", json!({"paymentRequestId": "num"}))
        .await;
    assert_eq!(after["paymentStatus"], "SUCCESS", "{after}");
    assert_eq!(
        after["transactions"].as_array().map(Vec::len),
        Some(1),
        "{after}"
    );
    let r = h
        .call_as(
            &h.other,
            "inquiryPayment",
            json!({"paymentRequestId": "num"}),
        )
        .await;
    assert_eq!(code_of(&r), "ORDER_NOT_EXIST", "request ids are per client");
    let r = h
        .call("inquiryRefund", json!({"refundRequestId": "nope"}))
        .await;
    assert_eq!(code_of(&r), "ORDER_NOT_EXIST");

    // Refunding a failed payment.
    h.fake.set_mode(PayMode::Fail("RISK_REJECT"));
    let r = h
        .call("pay", h.pay_body("failed", 100, &FakeWallet::code(2)))
        .await;
    assert_eq!(code_of(&r), "RISK_REJECT");
    let r = h
        .call("refund", json!({"refundRequestId": "rf", "paymentId": r["paymentId"], "refundAmount": {"currency": "SGD", "value": "1"}}))
        .await;
    assert_eq!(code_of(&r), "ORDER_STATUS_INVALID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotent_replays_and_concurrent_duplicates_charge_once() {
    let h = Harness::new().await;
    let before = h.balance("alice").await;
    let code = h.code_for("alice").await;
    let body = h.pay_body("dup-1", 300, &code);
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (client, url, body) = (h.merchant.clone(), h.url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            client
                .post::<Value, Value>(&format!("{url}/ams/api/v1/payments/pay"), &body)
                .await
                .unwrap()
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert!(
            ["SUCCESS", "PAYMENT_IN_PROCESS"].contains(&code_of(&r)),
            "{r}"
        );
        ids.insert(r["paymentId"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "one payment for one request id");
    let r = h.call("pay", body.clone()).await;
    assert_eq!(code_of(&r), "SUCCESS");
    assert_eq!(
        h.balance("alice").await,
        before - 300,
        "charged exactly once"
    );
    let mut changed = body.clone();
    changed["paymentAmount"]["value"] = json!("301");
    let r = h.call("pay", changed).await;
    assert_eq!(code_of(&r), "REPEAT_REQ_INCONSISTENT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refunds_never_exceed_the_paid_amount() {
    let h = Harness::new().await;
    let r = h
        .call("pay", h.pay_body("cr", 1000, &FakeWallet::code(3)))
        .await;
    let pid = r["paymentId"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (client, url, pid) = (h.merchant.clone(), h.url.clone(), pid.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"refundRequestId": format!("rf-{i}"), "paymentId": pid, "refundAmount": {"currency": "SGD", "value": "300"}});
            client
                .post::<Value, Value>(&format!("{url}/ams/api/v1/payments/refund"), &body)
                .await
                .unwrap()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match code_of(&r) {
            "SUCCESS" => ok += 1,
            "REFUND_AMOUNT_EXCEED" => {}
            other => panic!("unexpected {other}: {r}"),
        }
    }
    assert_eq!(ok, 3);
    let refunded: i64 = h.fake.state.lock().unwrap().refunds.values().sum();
    assert_eq!(refunded, 900);
}

/// Two acquirer processes on one store: copies of the same refund requests land on both at
/// once. The outcome is the serial one: every copy of the three refunds that fit succeeds,
/// each refund is stored and sent to the wallet once, and nothing beyond the paid amount.
/// (A copy that read the refunds before the first copy's lock was released would count that
/// copy against the amount left and answer REFUND_AMOUNT_EXCEED.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_refunds_on_two_acquirer_processes_are_one_refund_each() {
    let h = Harness::new().await;
    let second = h.second_acquirer().await;
    let r = h
        .call("pay", h.pay_body("two-proc", 1000, &FakeWallet::code(3)))
        .await;
    assert_eq!(code_of(&r), "SUCCESS", "{r}");
    let pid = r["paymentId"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let url = if i % 2 == 0 {
            h.url.clone()
        } else {
            second.clone()
        };
        let (client, pid) = (h.merchant.clone(), pid.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"refundRequestId": format!("dup-{}", i % 3), "paymentId": pid,
                              "refundAmount": {"currency": "SGD", "value": "300"}});
            client
                .post::<Value, Value>(&format!("{url}/ams/api/v1/payments/refund"), &body)
                .await
                .unwrap()
        }));
    }
    let mut refund_ids = std::collections::BTreeMap::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(code_of(&r), "SUCCESS", "{r}");
        refund_ids
            .entry(r["refundRequestId"].as_str().unwrap().to_string())
            .or_insert_with(std::collections::BTreeSet::new)
            .insert(r["refundId"].as_str().unwrap().to_string());
    }
    assert_eq!(refund_ids.len(), 3);
    assert!(
        refund_ids.values().all(|ids| ids.len() == 1),
        "{refund_ids:?}"
    );
    let refunded: i64 = h.fake.state.lock().unwrap().refunds.values().sum();
    assert_eq!(refunded, 900);
    let stored = h
        .sql_i64(
            "SELECT COUNT(*) FROM refunds WHERE payment_id = ?1 AND status = 'SUCCESS'",
            pid.clone(),
        )
        .await;
    assert_eq!(stored, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_racing_the_users_confirmation_ends_with_one_outcome() {
    let h = Harness::new().await;
    for round in 0..4 {
        let before = h.balance("bob").await;
        let token = h.device_token("bob").await;
        let code = h.code_for("bob").await;
        let rid = format!("race-{round}");
        let r = h.call("pay", h.pay_body(&rid, 2500, &code)).await;
        assert_eq!(code_of(&r), "PAYMENT_IN_PROCESS", "{r}");
        let list: Value = reqwest::Client::new()
            .get(format!("{}/customer/v1/challenges", h.wallet_url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let challenge = list["challenges"][0]["challengeId"]
            .as_str()
            .unwrap()
            .to_string();
        let confirm = {
            let (url, token) = (h.wallet_url.clone(), token.clone());
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(format!("{url}/customer/v1/challenges/{challenge}/confirm"))
                    .bearer_auth(token)
                    .json(&json!({"password": "123456"}))
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            })
        };
        let cancel = h.call("cancel", json!({"paymentRequestId": rid})).await;
        let _ = confirm.await.unwrap();
        assert_eq!(code_of(&cancel), "SUCCESS", "{cancel}");
        h.drain().await;
        let inq = h
            .call("inquiryPayment", json!({"paymentRequestId": rid}))
            .await;
        assert_eq!(inq["paymentStatus"], "CANCELLED", "{inq}");
        assert_eq!(
            h.balance("bob").await,
            before,
            "round {round}: the user is whole"
        );
        let pid = inq["paymentId"].as_str().unwrap().to_string();
        let n = h
            .sql_i64(
                "SELECT COUNT(*) FROM journal_entries WHERE payment_id = ?1",
                pid,
            )
            .await;
        assert!(
            n == 0 || n == 2,
            "either nothing posted or payment + reversal, got {n}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn password_payment_completes_by_wallet_notification() {
    let h = Harness::new().await;
    let rx = Receiver::start(0).await;
    let token = h.device_token("bob").await;
    let code = h.code_for("bob").await;
    let mut body = h.pay_body("pw-1", 2500, &code);
    body["paymentNotifyUrl"] = json!(rx.url);
    let r = h.call("pay", body).await;
    assert_eq!(code_of(&r), "PAYMENT_IN_PROCESS");
    let list = h.challenges(&token).await;
    let id = list["challenges"][0]["challengeId"].as_str().unwrap();
    let ok = h.confirm(&token, id).await;
    assert_eq!(ok["paymentStatus"], "SUCCESS", "{ok}");
    h.drain().await;
    let inq = h
        .call("inquiryPayment", json!({"paymentRequestId": "pw-1"}))
        .await;
    assert_eq!(inq["paymentStatus"], "SUCCESS");
    assert_eq!(rx.count(), 1);
    assert_eq!(rx.bodies()[0]["result"]["resultCode"], "SUCCESS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_wallet_outcome_stays_processing_until_the_reconciler_learns_it() {
    let h = Harness::with(Options {
        limits: Limits {
            wallet_pay_timeout_ms: 300,
            reconcile_interval_ms: 1_000,
            ..Options::default().limits
        },
    })
    .await;
    h.fake.set_mode(PayMode::SucceedSlowly(1_500));
    let r = h
        .call("pay", h.pay_body("slow", 400, &FakeWallet::code(4)))
        .await;
    assert_eq!(code_of(&r), "UNKNOWN_EXCEPTION", "{r}");
    assert_eq!(status_of(&r), "U");
    let pid = r["paymentId"].as_str().unwrap().to_string();
    let inq = h.call("inquiryPayment", json!({"paymentId": pid})).await;
    assert_eq!(inq["paymentStatus"], "PROCESSING");
    assert_eq!(inq["paymentResultCode"], "UNKNOWN_EXCEPTION");
    // Nothing is due until the reconciler's check time.
    h.acq.clock().advance_ms(20_000);
    h.drain().await;
    let inq = h.call("inquiryPayment", json!({"paymentId": pid})).await;
    assert_eq!(inq["paymentStatus"], "SUCCESS", "{inq}");
    assert!(h.fake.calls().iter().all(|c| !c.starts_with("cancel")));
    assert_eq!(
        h.sql_i64(
            "SELECT COUNT(*) FROM journal_entries WHERE payment_id = ?1",
            pid
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_reset_is_an_unknown_outcome_too() {
    let h = Harness::new().await;
    h.fake.set_mode(PayMode::SucceedThenHangUp);
    let r = h
        .call("pay", h.pay_body("reset", 400, &FakeWallet::code(5)))
        .await;
    assert_eq!(code_of(&r), "UNKNOWN_EXCEPTION", "{r}");
    h.acq.clock().advance_ms(20_000);
    h.drain().await;
    let inq = h
        .call("inquiryPayment", json!({"paymentRequestId": "reset"}))
        .await;
    assert_eq!(inq["paymentStatus"], "SUCCESS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_payment_is_closed_only_after_the_wallet_agrees() {
    let h = Harness::new().await;
    let rx = Receiver::start(0).await;
    h.fake.set_mode(PayMode::Pending);
    let mut body = h.pay_body("exp", 400, &FakeWallet::code(6));
    body["paymentNotifyUrl"] = json!(rx.url);
    let r = h.call("pay", body).await;
    assert_eq!(code_of(&r), "PAYMENT_IN_PROCESS");
    let pid = r["paymentId"].as_str().unwrap().to_string();
    h.acq.clock().advance_ms(5_000);
    h.drain().await;
    let inq = h.call("inquiryPayment", json!({"paymentId": pid})).await;
    assert_eq!(
        inq["paymentStatus"], "PROCESSING",
        "still waiting for the user"
    );
    h.acq.clock().advance_ms(120_000);
    h.drain().await;
    let inq = h.call("inquiryPayment", json!({"paymentId": pid})).await;
    assert_eq!(inq["paymentStatus"], "FAIL");
    assert_eq!(inq["paymentResultCode"], "ORDER_IS_CLOSED");
    assert!(h.fake.calls().contains(&format!("cancel {pid}")));
    // A late success from the wallet changes nothing.
    h.fake.set_payment(&pid, "S");
    let r = h
        .call("pay", h.pay_body("exp", 400, &FakeWallet::code(6)))
        .await;
    assert_eq!(code_of(&r), "ORDER_IS_CLOSED");
    assert_eq!(rx.count(), 1);
    assert_eq!(rx.bodies()[0]["result"]["resultCode"], "ORDER_IS_CLOSED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merchant_cancel_voids_a_pending_payment() {
    let h = Harness::new().await;
    h.fake.set_mode(PayMode::Pending);
    let r = h
        .call("pay", h.pay_body("void", 400, &FakeWallet::code(7)))
        .await;
    assert_eq!(code_of(&r), "PAYMENT_IN_PROCESS");
    let c = h.call("cancel", json!({"paymentRequestId": "void"})).await;
    assert_eq!(code_of(&c), "SUCCESS");
    let inq = h
        .call("inquiryPayment", json!({"paymentRequestId": "void"}))
        .await;
    assert_eq!(inq["paymentStatus"], "CANCELLED");
    let pid = inq["paymentId"].as_str().unwrap().to_string();
    assert_eq!(
        h.sql_i64(
            "SELECT COUNT(*) FROM journal_entries WHERE payment_id = ?1",
            pid
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notifications_are_retried_then_parked_and_can_be_resent() {
    let h = Harness::new().await;
    let rx = Receiver::start(2).await;
    let mut body = h.pay_body("n-1", 400, &FakeWallet::code(8));
    body["paymentNotifyUrl"] = json!(rx.url);
    h.call("pay", body).await;
    h.drain().await;
    assert_eq!(
        rx.count(),
        1,
        "first attempt failed; next one is 60 s later"
    );
    h.acq.clock().advance_ms(61_000);
    h.drain().await;
    h.acq.clock().advance_ms(61_000);
    h.drain().await;
    assert_eq!(rx.count(), 3);
    let list = h
        .admin_get("/admin/v1/notifications?status=DELIVERED")
        .await;
    assert_eq!(list[0]["attempts"], 3);

    // Every attempt fails: parked after the schedule, then resent by an operator.
    let rx2 = Receiver::start(100).await;
    let mut body = h.pay_body("n-2", 400, &FakeWallet::code(9));
    body["paymentNotifyUrl"] = json!(rx2.url);
    h.call("pay", body).await;
    for _ in 0..4 {
        h.drain().await;
        h.acq.clock().advance_ms(61_000);
    }
    assert_eq!(rx2.count(), 3);
    let parked = h.admin_get("/admin/v1/notifications?status=PARKED").await;
    assert_eq!(parked.as_array().unwrap().len(), 1);
    rx2.state
        .fail_first
        .store(0, std::sync::atomic::Ordering::SeqCst);
    let id = parked[0]["id"].as_i64().unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/admin/v1/notifications/{id}/resend", h.url))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    h.drain().await;
    assert_eq!(rx2.count(), 4);
    let delivered = h
        .admin_get("/admin/v1/notifications?status=DELIVERED")
        .await;
    assert_eq!(delivered.as_array().unwrap().len(), 2);
}

/// Sends a raw request and returns (status, lower-case headers, body).
async fn raw(
    h: &Harness,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", h.url))
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    // Every answer is signed for the path as sent.
    paycode_http::verify_answer(&verify_key(), &headers, path, &bytes).expect("answer is signed");
    (status, headers, serde_json::from_slice(&bytes).unwrap())
}

/// Headers of a request signed now (these tests do not move the acquirer's clock).
fn signed_headers(
    client: &str,
    key_name: &str,
    key_version: u32,
    path: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    signed_headers_at(
        &paycode_http::now_iso(),
        client,
        key_name,
        key_version,
        path,
        body,
    )
}

/// Headers of a request signed with `time` as its `Request-Time`.
fn signed_headers_at(
    time: &str,
    client: &str,
    key_name: &str,
    key_version: u32,
    path: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    let time = time.to_string();
    let sig = paycode_sign::sign(
        common::key(key_name),
        key_version,
        path,
        client,
        &time,
        body,
    )
    .unwrap();
    vec![
        ("Client-Id".into(), client.into()),
        ("Request-Time".into(), time),
        ("Signature".into(), sig),
        (
            "Content-Type".into(),
            "application/json; charset=UTF-8".into(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_requests_get_specific_signed_answers() {
    let h = Harness::new().await;
    let path = "/ams/api/v1/payments/inquiryPayment";
    let body = br#"{"paymentRequestId": "none"}"#;
    let check = |hs: Vec<(String, String)>| hs;
    let as_refs = |hs: &[(String, String)]| {
        hs.iter()
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect::<Vec<_>>()
    };

    // Correct signature, pretty-printed body, sandbox prefix: verified over the raw bytes.
    let pretty = b"{\n  \"paymentRequestId\" : \"none\"\n}";
    let sandbox = "/ams/sandbox/api/v1/payments/inquiryPayment";
    let hs = signed_headers(CLIENT, "merchant", 1, sandbox, pretty);
    let refs: Vec<(&str, &str)> = hs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let (status, headers, v) = raw(&h, sandbox, &refs, pretty).await;
    assert_eq!(status, 200);
    assert_eq!(code_of(&v), "ORDER_NOT_EXIST");
    assert_eq!(headers["client-id"], CLIENT);
    assert!(headers.contains_key("response-time"));

    // Spaces after commas in the Signature header are tolerated.
    let mut hs = signed_headers(CLIENT, "merchant", 1, path, body);
    hs[2].1 = hs[2].1.replace(',', ", ");
    let refs: Vec<(&str, &str)> = hs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let (_, _, v) = raw(&h, path, &refs, body).await;
    assert_eq!(code_of(&v), "ORDER_NOT_EXIST");

    type Headers = Vec<(String, String)>;
    let cases: Vec<(Headers, &[u8], &str)> = vec![
        // Signed over other bytes.
        (
            check(signed_headers(CLIENT, "merchant", 1, path, b"{}")),
            body,
            "SIGNATURE_INVALID",
        ),
        // Signed by another key.
        (
            signed_headers(CLIENT, "other", 1, path, body),
            body,
            "SIGNATURE_INVALID",
        ),
        // Unknown key version.
        (
            signed_headers(CLIENT, "merchant", 7, path, body),
            body,
            "KEY_NOT_FOUND",
        ),
        // Unknown client.
        (
            signed_headers("NOBODY", "merchant", 1, path, body),
            body,
            "CLIENT_INVALID",
        ),
        // Missing signature.
        (
            as_refs(&signed_headers(CLIENT, "merchant", 1, path, body)[..2]),
            body,
            "SIGNATURE_INVALID",
        ),
    ];
    for (hs, b, expect) in cases {
        let refs: Vec<(&str, &str)> = hs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let (status, _, v) = raw(&h, path, &refs, b).await;
        assert_eq!(status, 200);
        assert_eq!(code_of(&v), expect, "{v}");
    }

    // Malformed JSON, invalid UTF-8, deep nesting: PARAM_ILLEGAL naming the body.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    for bad in [&b"{not json"[..], b"\xff\xfe{}", deep.as_bytes()] {
        let hs = signed_headers(CLIENT, "merchant", 1, path, bad);
        let refs: Vec<(&str, &str)> = hs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let (_, _, v) = raw(&h, path, &refs, bad).await;
        assert_eq!(code_of(&v), "PARAM_ILLEGAL", "{v}");
    }
    // Oversized body.
    let huge = vec![b' '; 200 * 1024];
    let hs = signed_headers(CLIENT, "merchant", 1, path, &huge);
    let refs: Vec<(&str, &str)> = hs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let (status, _, v) = raw(&h, path, &refs, &huge).await;
    assert_eq!((status, code_of(&v)), (200, "PARAM_ILLEGAL"));

    // Unknown API.
    let p = "/ams/api/v1/payments/teleport";
    let hs = signed_headers(CLIENT, "merchant", 1, p, body);
    let refs: Vec<(&str, &str)> = hs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let (_, _, v) = raw(&h, p, &refs, body).await;
    assert_eq!(code_of(&v), "INVALID_API");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_absolute_form_request_line_is_routed_and_verified_on_its_path() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::new().await;
    let path = "/ams/api/v1/payments/inquiryPayment";
    let body = br#"{"paymentRequestId":"none"}"#;
    let hs = signed_headers(CLIENT, "merchant", 1, path, body);
    let addr = h.url.trim_start_matches("http://");
    let mut req = format!(
        "POST http://{addr}{path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in &hs {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("ORDER_NOT_EXIST"), "{out}");
    assert!(out.contains("\r\nsignature: algorithm=RSA256"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_metrics_and_route_lookup() {
    let h = Harness::new().await;
    let code = h.code_for("alice").await;
    h.call("pay", h.pay_body("m-1", 100, &code)).await;
    let text = reqwest::get(format!("{}/metrics", h.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("paycode_requests_total"), "{text}");
    assert!(
        reqwest::get(format!("{}/healthz", h.url))
            .await
            .unwrap()
            .status()
            .is_success()
    );
    assert!(
        reqwest::get(format!("{}/readyz", h.url))
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let w = h
        .admin_get(&format!("/admin/v1/routes/lookup?code={code}"))
        .await;
    assert_eq!(w["wallet"], "sgpay");
    assert!(
        !w["code"].as_str().unwrap().contains(&code[..20]),
        "codes are masked"
    );
    let unauth = reqwest::get(format!("{}/admin/v1/notifications", h.url))
        .await
        .unwrap();
    assert_eq!(unauth.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_currencies_in_one_payment_are_quoted_answered_notified_and_booked() {
    let h = Harness::new().await;
    h.acq
        .set_rate_file("mid USD/JPY 150.00\nmid USD/CNY 7.20\nspread default 50 50\n".into())
        .await
        .unwrap();
    let fake_url = h.fake.url.clone();
    h.acq
        .db()
        .write(move |c| {
            use paycode_acquirer::registry::*;
            upsert_merchant(
                c,
                &NewMerchant {
                    client_id: CLIENT,
                    reference_merchant_id: "M-JP",
                    name: "Ginza Shop",
                    mcc: "5812",
                    currencies: &["JPY".to_string()],
                    settlement_currency: "USD",
                    max_amount_minor: None,
                    notify_url: None,
                    active: true,
                    fee_bps: 200,
                    time_zone: "Asia/Tokyo",
                    cutoff_minutes: 0,
                },
            )?;
            upsert_wallet(
                c,
                &NewWallet {
                    name: "cnfake",
                    psp_name: "cnfake",
                    base_url: &fake_url,
                    public_key: &key("fakepay").public_key(),
                    currencies: &["CNY".to_string()],
                    enabled: true,
                },
            )?;
            upsert_route(c, "CII", "289998", "cnfake", 100)?;
            Ok::<_, paycode_acquirer::ApiError>(())
        })
        .await
        .unwrap();
    h.acq.registry().reload(h.acq.db()).await.unwrap();
    let rx = Receiver::start(0).await;
    let mut body = h.pay_body("fx-1", 1000, "289998020000000000000001");
    body["paymentAmount"] = json!({"currency": "JPY", "value": "1000"});
    body["order"]["merchant"]["referenceMerchantId"] = json!("M-JP");
    body["paymentNotifyUrl"] = json!(rx.url);
    let r = h.call("pay", body).await;
    assert_eq!(code_of(&r), "SUCCESS", "{r}");
    assert_eq!(r["paymentQuote"]["quoteCurrencyPair"], "JPY/CNY");
    assert_eq!(r["settlementQuote"]["quoteCurrencyPair"], "USD/JPY");
    assert_eq!(r["actualPaymentAmount"]["currency"], "CNY");
    assert_eq!(r["grossSettlementAmount"]["currency"], "USD");
    // What the wallet was asked to debit is exactly what the merchant is told the user paid.
    let pid = r["paymentId"].as_str().unwrap().to_string();
    let asked = h.fake.state.lock().unwrap().pay_to[&pid]
        .pay_to_amount
        .clone();
    assert_eq!(r["actualPaymentAmount"]["value"], asked.value.as_str());
    // 1000 JPY at 7.20/150 CNY per JPY plus a 50 bps ask spread is 48.24 CNY; settled at about
    // 150 JPY per USD less the bid side: between 6.60 and 6.70 USD.
    assert_eq!(asked.value, "4824");
    let usd: i64 = r["grossSettlementAmount"]["value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((660..=670).contains(&usd), "{usd}");

    let inq = h.call("inquiryPayment", json!({"paymentId": pid})).await;
    for field in [
        "paymentQuote",
        "settlementQuote",
        "actualPaymentAmount",
        "grossSettlementAmount",
    ] {
        assert_eq!(inq[field], r[field], "{field}");
    }
    h.drain().await;
    let n = &rx.bodies()[0];
    for field in [
        "paymentQuote",
        "settlementQuote",
        "actualPaymentAmount",
        "grossSettlementAmount",
    ] {
        assert_eq!(n[field], r[field], "{field}");
    }
    // Booked through the FX position: every entry balances per currency, and the fee (2%) is
    // revenue in the settlement currency.
    let unbalanced = h
        .sql_i64(
            "SELECT COUNT(*) FROM (SELECT entry_id, currency FROM postings \
             GROUP BY entry_id, currency \
             HAVING SUM(CASE side WHEN 'D' THEN amount_minor ELSE -amount_minor END) != 0) t \
             WHERE CAST(?1 AS TEXT) = ?1",
            String::new(),
        )
        .await;
    assert_eq!(unbalanced, 0);
    let fee = h
        .sql_i64(
            "SELECT -balance_minor FROM account_balances WHERE account = ?1",
            "fee_revenue::USD".into(),
        )
        .await;
    assert_eq!(fee, (usd * 200 + 5_000) / 10_000);
    let fx_cny = h
        .sql_i64(
            "SELECT -balance_minor FROM account_balances WHERE account = ?1",
            "fx_position::CNY".into(),
        )
        .await;
    assert_eq!(fx_cny, 4824);

    // Refunding it all in two parts gives the whole fee back, to the minor unit, whatever the
    // split (the fee share is fixed when each refund succeeds).
    for (rid, value) in [("fx-r1", "333"), ("fx-r2", "667")] {
        let rf = h
            .call(
                "refund",
                json!({"refundRequestId": rid, "paymentId": pid, "refundAmount": {"currency": "JPY", "value": value}}),
            )
            .await;
        assert_eq!(code_of(&rf), "SUCCESS", "{rf}");
    }
    let fee_back = h
        .sql_i64(
            "SELECT SUM(fee_minor) FROM refunds WHERE payment_id = ?1 AND status = 'SUCCESS'",
            pid.clone(),
        )
        .await;
    assert_eq!(fee_back, fee);
    let revenue = h
        .sql_i64(
            "SELECT balance_minor FROM account_balances WHERE account = ?1",
            "fee_revenue::USD".into(),
        )
        .await;
    assert_eq!(revenue, 0);
    let to_user: i64 = h.fake.state.lock().unwrap().refunds.values().sum();
    assert_eq!(
        to_user, 4824,
        "the user gets back exactly what they paid in CNY"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn risk_rules_are_data_and_every_decision_is_recorded_with_its_rule() {
    let h = Harness::new().await;
    let http = reqwest::Client::new();
    let put = |body: String| {
        http.post(format!("{}/admin/v1/risk/rules", h.url))
            .bearer_auth("admin-secret")
            .body(body)
            .send()
    };
    // A bad rule list is refused whole, naming the rule and field.
    let bad = put(r#"[{"id": "m", "kind": "MAX_AMOUNT", "currency": "SGD"}]"#.into())
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains(r#"rules[0] (\"m\").maxMinor"#)
    );
    let rules = r#"[
        {"id": "replay", "kind": "CODE_REPLAY", "code": "EXPIRED_CODE"},
        {"id": "max-sgd", "kind": "MAX_AMOUNT", "currency": "SGD", "maxMinor": 5000, "code": "PAYMENT_AMOUNT_EXCEED_LIMIT"},
        {"id": "velocity", "kind": "MERCHANT_DAILY_COUNT", "max": 4, "code": "PAYMENT_COUNT_EXCEED_LIMIT"}
    ]"#;
    assert!(put(rules.into()).await.unwrap().status().is_success());

    let ok = h
        .call("pay", h.pay_body("rk-1", 100, &FakeWallet::code(20)))
        .await;
    assert_eq!(code_of(&ok), "SUCCESS");
    let t = h
        .admin_get(&format!(
            "/admin/v1/payments/{}",
            ok["paymentId"].as_str().unwrap()
        ))
        .await;
    let created = t["timeline"][0]["detail"].as_str().unwrap();
    assert!(
        created.contains("allow (rule set v1, 3 rules checked)"),
        "{created}"
    );

    let big = h
        .call("pay", h.pay_body("rk-2", 5001, &FakeWallet::code(21)))
        .await;
    assert_eq!(code_of(&big), "PAYMENT_AMOUNT_EXCEED_LIMIT");
    let pid = big["paymentId"].as_str().unwrap().to_string();
    let t = h.admin_get(&format!("/admin/v1/payments/{pid}")).await;
    assert_eq!(t["timeline"][0]["kind"], "RISK");
    assert!(
        t["timeline"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("by rule set v1: max-sgd (")
    );
    let inq = h.call("inquiryPayment", json!({"paymentId": pid})).await;
    assert_eq!(inq["paymentStatus"], "FAIL");

    // The same code in another payment never reaches the wallet.
    let calls_before = h.fake.calls().len();
    let replay = h
        .call("pay", h.pay_body("rk-3", 100, &FakeWallet::code(20)))
        .await;
    assert_eq!(code_of(&replay), "EXPIRED_CODE");
    assert_eq!(h.fake.calls().len(), calls_before);

    // Three attempts so far (refused ones count); the fourth is allowed, the fifth is over.
    let fourth = h
        .call("pay", h.pay_body("rk-4", 100, &FakeWallet::code(22)))
        .await;
    assert_eq!(code_of(&fourth), "SUCCESS", "{fourth}");
    let fifth = h
        .call("pay", h.pay_body("rk-5", 100, &FakeWallet::code(23)))
        .await;
    assert_eq!(code_of(&fifth), "PAYMENT_COUNT_EXCEED_LIMIT", "{fifth}");
    // A replayed request id still answers with its first outcome.
    let again = h
        .call("pay", h.pay_body("rk-1", 100, &FakeWallet::code(20)))
        .await;
    assert_eq!(code_of(&again), "SUCCESS");
    let wallet_pays = h
        .fake
        .calls()
        .iter()
        .filter(|c| c.starts_with("pay"))
        .count();
    assert_eq!(wallet_pays, 2, "only rk-1 and rk-4 reached the wallet");
}

/// 1,000 random codes from one merchant client: its terminal, then its merchant, then the client
/// itself are refused before any wallet call, with nothing stored; another client's customers
/// and the same wallet's genuine users pay at once; the limits survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guessing_is_refused_at_its_source_before_any_wallet_call() {
    use paycode_core::guess::SourceLimit;
    let limit = |failures_max| SourceLimit {
        failures_max,
        window_s: 60,
    };
    let h = Harness::with(Options {
        limits: Limits {
            guess_per_terminal: limit(5),
            guess_per_merchant: limit(12),
            guess_per_client: limit(20),
            ..Options::default().limits
        },
    })
    .await;
    h.acq
        .db()
        .write(move |c| {
            paycode_acquirer::registry::upsert_merchant(
                c,
                &paycode_acquirer::registry::NewMerchant {
                    client_id: CLIENT,
                    reference_merchant_id: "M2",
                    name: "Second Shop",
                    mcc: "5812",
                    currencies: &["SGD".to_string()],
                    settlement_currency: "SGD",
                    max_amount_minor: None,
                    notify_url: None,
                    active: true,
                    fee_bps: 0,
                    time_zone: "Asia/Singapore",
                    cutoff_minutes: 0,
                },
            )?;
            Ok::<_, paycode_acquirer::ApiError>(())
        })
        .await
        .unwrap();
    h.acq.registry().reload(h.acq.db()).await.unwrap();

    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut guess = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        format!("{REAL_CII}02{:016}", rng % 10_000_000_000_000_000)
    };
    let from = |mut body: Value, merchant: &str, terminal: &str| {
        body["order"]["merchant"]["referenceMerchantId"] = json!(merchant);
        body["order"]["env"]["storeTerminalId"] = json!(terminal);
        body
    };
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    let mut refused_ids = Vec::new();
    for i in 0..1_000 {
        // Terminals T1, T2, T3 of M1 in turn, then a new terminal of M2 for every guess: each
        // limit in turn ends the guessing.
        let (merchant, terminal) = match i {
            0..300 => (MERCHANT, "T1".to_string()),
            300..600 => (MERCHANT, "T2".to_string()),
            600..700 => (MERCHANT, "T3".to_string()),
            _ => ("M2", format!("T{i}")),
        };
        let id = format!("GUESS-{i}");
        let r = h
            .call(
                "pay",
                from(h.pay_body(&id, 100, &guess()), merchant, &terminal),
            )
            .await;
        let code = r["result"]["resultCode"].as_str().unwrap().to_string();
        if code == "REQUEST_TRAFFIC_EXCEED_LIMIT" {
            assert_eq!(r["result"]["resultStatus"], "U", "{r}");
            refused_ids.push(id);
        }
        *answers.entry(code).or_default() += 1;
    }
    // 5 at T1, 5 at T2, 2 at T3 (the merchant's 12), then 8 at M2 (the client's 20).
    assert_eq!(answers.get("INVALID_CODE"), Some(&20), "{answers:?}");
    assert_eq!(
        answers.get("REQUEST_TRAFFIC_EXCEED_LIMIT"),
        Some(&980),
        "{answers:?}"
    );
    // Nothing was stored for a refused request, and no wallet saw it.
    let stored = h
        .sql_i64(
            "SELECT COUNT(*) FROM payments WHERE client_id = ?1",
            CLIENT.to_string(),
        )
        .await;
    assert_eq!(stored, 20);
    for id in [&refused_ids[0], &refused_ids[979]] {
        let r = h
            .call("inquiryPayment", json!({"paymentRequestId": id}))
            .await;
        assert_eq!(r["result"]["resultCode"], "ORDER_NOT_EXIST", "{r}");
    }
    // The guessing client is refused even a genuine code, with the reason and when to retry.
    let alice_code = h.code_for("alice").await;
    let r = h
        .call(
            "pay",
            from(h.pay_body("GENUINE-1", 100, &alice_code), "M2", "T9"),
        )
        .await;
    assert_eq!(r["result"]["resultCode"], "REQUEST_TRAFFIC_EXCEED_LIMIT");
    let message = r["result"]["resultMessage"].as_str().unwrap();
    assert!(
        message.contains(&format!("client {CLIENT}")) && message.contains("try again in"),
        "{message}"
    );
    // Another merchant client's customers, the same wallet's genuine users: paid at once.
    let before = h.balance("alice").await;
    for (i, user) in ["alice", "carol", "alice"].iter().enumerate() {
        let code = h.code_for(user).await;
        let body = from(h.pay_body(&format!("OTHER-{i}"), 100, &code), "O1", "T1");
        let r = h.call_as(&h.other, "pay", body).await;
        assert_eq!(r["result"]["resultCode"], "SUCCESS", "{user}: {r}");
    }
    assert_eq!(h.balance("alice").await, before - 200);
    // Restart: the counters are in the store, so the client is still refused; others still pay.
    let (acq, url) = h.reopen_acquirer().await;
    let post = |client: &paycode_http::SignedClient, body: Value| {
        let url = format!("{url}/ams/api/v1/payments/pay");
        let client = client.clone();
        async move { client.post::<Value, Value>(&url, &body).await.unwrap() }
    };
    let r = post(
        &h.merchant,
        from(
            h.pay_body("AFTER-1", 100, &h.code_for("alice").await),
            MERCHANT,
            "T7",
        ),
    )
    .await;
    assert_eq!(
        r["result"]["resultCode"], "REQUEST_TRAFFIC_EXCEED_LIMIT",
        "{r}"
    );
    let r = post(
        &h.other,
        from(
            h.pay_body("AFTER-2", 100, &h.code_for("alice").await),
            "O1",
            "T1",
        ),
    )
    .await;
    assert_eq!(r["result"]["resultCode"], "SUCCESS", "{r}");
    // When the window has closed the client may try again.
    acq.clock().advance_ms(61_000);
    let r = post(
        &h.merchant,
        from(
            h.pay_body("AFTER-3", 100, &h.code_for("alice").await),
            MERCHANT,
            "T7",
        ),
    )
    .await;
    assert_eq!(r["result"]["resultCode"], "SUCCESS", "{r}");
    assert_eq!(h.balance("alice").await, before - 400);
}

/// Re-registers the double `fakepay` with another display name and state, as an operator would.
async fn set_fakepay(h: &Harness, psp_name: &'static str, enabled: bool) {
    let url = h.fake.url.clone();
    h.acq
        .db()
        .write(move |c| {
            paycode_acquirer::registry::upsert_wallet(
                c,
                &paycode_acquirer::registry::NewWallet {
                    name: "fakepay",
                    psp_name,
                    base_url: &url,
                    public_key: &key("fakepay").public_key(),
                    currencies: &["SGD".to_string()],
                    enabled,
                },
            )?;
            Ok::<_, paycode_acquirer::ApiError>(())
        })
        .await
        .unwrap();
    h.acq.registry().reload(h.acq.db()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn code_issuer_inquiry_names_the_wallet_and_refuses_what_pay_refuses() {
    let h = Harness::new().await;
    let before = h.balance("alice").await;
    let code = h.code_for("alice").await;

    // A signed answer (`call` verifies it) naming the wallet, on both prefixes; the code is
    // never echoed.
    let r = h
        .call("inquiryCodeIssuer", json!({"paymentCode": code}))
        .await;
    assert_eq!((code_of(&r), status_of(&r)), ("SUCCESS", "S"), "{r}");
    assert_eq!(r["pspName"], "sgpay");
    assert_eq!(r["walletName"], "sgpay");
    assert!(!r.to_string().contains(&code[6..]), "{r}");
    let sandbox: Value = h
        .merchant
        .post(
            &format!("{}/ams/sandbox/api/v1/payments/inquiryCodeIssuer", h.url),
            &json!({"paymentCode": code}),
        )
        .await
        .unwrap();
    assert_eq!(sandbox["pspName"], "sgpay", "{sandbox}");
    // Any registered merchant may ask, with its own key.
    let other = h
        .call_as(&h.other, "inquiryCodeIssuer", json!({"paymentCode": code}))
        .await;
    assert_eq!(code_of(&other), "SUCCESS", "{other}");

    // The look-up wrote nothing and used nothing: the same code then pays, once, from the
    // wallet the look-up named.
    assert_eq!(
        h.sql_i64("SELECT COUNT(*) FROM payments WHERE ?1 = ?1", String::new())
            .await,
        0
    );
    let paid = h.call("pay", h.pay_body("ci-1", 300, &code)).await;
    assert_eq!(code_of(&paid), "SUCCESS", "{paid}");
    assert_eq!(paid["pspCustomerInfo"]["pspName"], r["pspName"]);
    assert_eq!(h.balance("alice").await, before - 300);

    // The display name and the routing id are told apart.
    set_fakepay(&h, "FakePay Global", true).await;
    let fake_code = FakeWallet::code(7);
    let r = h
        .call("inquiryCodeIssuer", json!({"paymentCode": fake_code}))
        .await;
    assert_eq!(code_of(&r), "SUCCESS", "{r}");
    assert_eq!(
        (r["pspName"].as_str(), r["walletName"].as_str()),
        (Some("FakePay Global"), Some("fakepay"))
    );

    // Unknown issuer, disabled issuer, malformed code: INVALID_CODE with pay's own message.
    set_fakepay(&h, "FakePay Global", false).await;
    for (i, bad) in ["777777021234567890123456", fake_code.as_str(), "12345"]
        .into_iter()
        .enumerate()
    {
        let looked = h
            .call("inquiryCodeIssuer", json!({"paymentCode": bad}))
            .await;
        let paid = h
            .call("pay", h.pay_body(&format!("ci-bad-{i}"), 100, bad))
            .await;
        assert_eq!(
            (code_of(&looked), status_of(&looked)),
            ("INVALID_CODE", "F")
        );
        assert_eq!(code_of(&paid), "INVALID_CODE", "{paid}");
        let (said, pay_said) = (
            looked["result"]["resultMessage"].as_str().unwrap(),
            paid["result"]["resultMessage"].as_str().unwrap(),
        );
        if bad == "12345" {
            // Each names its own field.
            assert!(said.starts_with("paymentCode: "), "{said}");
            assert_eq!(
                said.strip_prefix("paymentCode: "),
                pay_said.strip_prefix("paymentMethod.paymentMethodId: ")
            );
        } else {
            assert_eq!(said, pay_said);
            assert!(!said.contains(&bad[..20]), "codes are masked: {said}");
        }
        assert!(looked.get("pspName").is_none(), "{looked}");
    }
    assert!(
        h.fake.calls().is_empty(),
        "no wallet is called for a look-up or a refused code"
    );

    // A missing or mistyped field is PARAM_ILLEGAL naming it.
    for body in [json!({}), json!({"paymentCode": ["2810"]})] {
        let r = h.call("inquiryCodeIssuer", body.clone()).await;
        assert_eq!(code_of(&r), "PARAM_ILLEGAL", "{body} -> {r}");
        assert!(
            r["result"]["resultMessage"]
                .as_str()
                .unwrap()
                .contains("paymentCode"),
            "{r}"
        );
    }
    // The code may come as a JSON number, as for pay: this legacy-form code (which fits in
    // one) matches no route.
    let r = h
        .call(
            "inquiryCodeIssuer",
            json!({"paymentCode": 28100502123456789u64}),
        )
        .await;
    assert_eq!(code_of(&r), "INVALID_CODE", "{r}");
    assert!(
        r["result"]["resultMessage"]
            .as_str()
            .unwrap()
            .contains("unknown issuer"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn code_issuer_inquiry_is_authenticated_like_every_merchant_call() {
    let h = Harness::new().await;
    let path = "/ams/api/v1/payments/inquiryCodeIssuer";
    let body = format!(r#"{{"paymentCode": "{REAL_CII}021234567812345678"}}"#);
    let body = body.as_bytes();
    type Headers = Vec<(String, String)>;
    let cases: Vec<(Headers, &str)> = vec![
        // Signed over other bytes, by another key, with an unknown key version, by nobody.
        (
            signed_headers(CLIENT, "merchant", 1, path, b"{}"),
            "SIGNATURE_INVALID",
        ),
        (
            signed_headers(CLIENT, "other", 1, path, body),
            "SIGNATURE_INVALID",
        ),
        (
            signed_headers(CLIENT, "merchant", 7, path, body),
            "KEY_NOT_FOUND",
        ),
        (
            signed_headers("NOBODY", "merchant", 1, path, body),
            "CLIENT_INVALID",
        ),
        // No signature.
        (
            signed_headers(CLIENT, "merchant", 1, path, body)[..2].to_vec(),
            "SIGNATURE_INVALID",
        ),
        // No client id at all.
        (
            signed_headers(CLIENT, "merchant", 1, path, body)
                .into_iter()
                .filter(|(name, _)| name != "Client-Id")
                .collect(),
            "CLIENT_INVALID",
        ),
    ];
    for (hs, expect) in cases {
        let refs: Vec<(&str, &str)> = hs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        // `raw` checks that even a refusal is HTTP 200 with a signed answer.
        let (status, _, v) = raw(&h, path, &refs, body).await;
        assert_eq!(status, 200);
        assert_eq!((code_of(&v), status_of(&v)), (expect, "F"), "{v}");
        assert!(
            v.get("pspName").is_none(),
            "refused calls name no wallet: {v}"
        );
    }
    // The same request, correctly signed, is answered.
    let hs = signed_headers(CLIENT, "merchant", 1, path, body);
    let refs: Vec<(&str, &str)> = hs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let (_, headers, v) = raw(&h, path, &refs, body).await;
    assert_eq!(code_of(&v), "SUCCESS", "{v}");
    assert_eq!(v["pspName"], "sgpay");
    assert_eq!(headers["client-id"], CLIENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_with_oversized_headers_gets_a_signed_param_illegal_and_pays_nothing() {
    let h = Harness::new().await;
    let before = h.balance("alice").await;
    let code = h.code_for("alice").await;
    let path = "/ams/api/v1/payments/pay";
    let body = serde_json::to_vec(&h.pay_body("big-head", 1250, &code)).unwrap();
    let limit = paycode_http::server::ServerLimits::default().header_max_bytes;
    let padded = |pad_bytes: usize| {
        let time = paycode_http::now_iso();
        let sig = paycode_sign::sign(common::key("merchant"), 1, path, CLIENT, &time, &body);
        vec![
            ("Client-Id".to_string(), CLIENT.to_string()),
            ("Request-Time".into(), time),
            ("Signature".into(), sig.unwrap()),
            (
                "Content-Type".into(),
                "application/json; charset=UTF-8".into(),
            ),
            ("X-Padding".into(), "p".repeat(pad_bytes)),
        ]
    };

    let hs = padded(limit);
    let refs: Vec<(&str, &str)> = hs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let (status, headers, v) = raw(&h, path, &refs, &body).await;
    assert_eq!(status, 200);
    assert_eq!(headers["client-id"], CLIENT);
    assert_eq!((code_of(&v), status_of(&v)), ("PARAM_ILLEGAL", "F"), "{v}");
    let message = v["result"]["resultMessage"].as_str().unwrap();
    assert!(
        message.starts_with("headers: the request header block is ")
            && message.ends_with(&format!("at most {limit} bytes are accepted")),
        "{message}"
    );

    // Nothing was written and no money moved.
    let inq = h
        .call("inquiryPayment", json!({"paymentRequestId": "big-head"}))
        .await;
    assert_eq!(code_of(&inq), "ORDER_NOT_EXIST", "{inq}");
    assert_eq!(h.balance("alice").await, before);

    // The same request with ordinary headers pays.
    let hs = padded(16);
    let refs: Vec<(&str, &str)> = hs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let (status, _, v) = raw(&h, path, &refs, &body).await;
    assert_eq!((status, code_of(&v)), (200, "SUCCESS"), "{v}");
    assert_eq!(h.balance("alice").await, before - 1250);
}

// ------------------------------------------------------------------------------- buyer risk

/// Replaces the acquirer's rules through the admin API; returns the new version.
async fn put_rules(h: &Harness, rules: &str) -> i64 {
    let r = h
        .admin_post("/admin/v1/risk/rules", rules.to_string())
        .await;
    assert_eq!(r["result"], "SUCCESS", "{r}");
    r["version"].as_i64().unwrap()
}

/// The other client's merchant `O1`.
fn pay_body_at_o1(h: &Harness, request_id: &str, value: i64, code: &str) -> Value {
    let mut body = h.pay_body(request_id, value, code);
    body["order"]["merchant"] = json!({"referenceMerchantId": "O1", "merchantName": "Other Shop",
                                        "merchantMCC": "5812"});
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_customer_over_its_velocity_is_rejected_at_a_second_merchant() {
    let h = Harness::new().await;
    put_rules(
        &h,
        r#"[{"id": "buyer-burst", "kind": "CUSTOMER_VELOCITY", "windowMinutes": 10, "max": 2,
             "code": "PAYMENT_COUNT_EXCEED_LIMIT"}]"#,
    )
    .await;
    let before = h.balance("alice").await;
    let (codes, _) = h.device_codes("alice", 3).await;
    let first = h.call("pay", h.pay_body("v-1", 300, &codes[0])).await;
    assert_eq!(code_of(&first), "SUCCESS", "{first}");
    let second = h
        .call_as(&h.other, "pay", pay_body_at_o1(&h, "v-2", 400, &codes[1]))
        .await;
    assert_eq!(code_of(&second), "SUCCESS", "{second}");
    // Third attempt within ten minutes, at the first merchant again, on another client.
    let third = h.call("pay", h.pay_body("v-3", 500, &codes[2])).await;
    assert_eq!(code_of(&third), "PAYMENT_COUNT_EXCEED_LIMIT", "{third}");
    assert_eq!(h.balance("alice").await, before - 700, "two debits only");
    let pid = third["paymentId"].as_str().unwrap();
    let view = h.admin_get(&format!("/admin/v1/payments/{pid}")).await;
    assert_eq!(view["risk"]["verdict"], "REJECT", "{view}");
    assert_eq!(view["risk"]["hits"][0]["ruleId"], "buyer-burst");
    assert_eq!(view["risk"]["rulesVersion"], 1);
    assert!(
        view["postings"].as_array().unwrap().is_empty(),
        "a refused payment books nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_challenged_small_payment_waits_for_the_password_and_succeeds_after_it() {
    let h = Harness::new().await;
    put_rules(
        &h,
        r#"[{"id": "cafe-check", "kind": "HIGH_RISK_MCC", "mccs": ["5812"], "currency": "SGD",
             "minMinor": 200, "action": "CHALLENGE"}]"#,
    )
    .await;
    let before = h.balance("alice").await;
    // Alice pays up to 500.00 without a password; the rule asks for it at 2.00.
    let (codes, token) = h.device_codes("alice", 2).await;
    let small = h.call("pay", h.pay_body("ch-0", 150, &codes[0])).await;
    assert_eq!(
        code_of(&small),
        "SUCCESS",
        "under the threshold: no challenge"
    );
    let r = h.call("pay", h.pay_body("ch-1", 250, &codes[1])).await;
    assert_eq!(code_of(&r), "PAYMENT_IN_PROCESS", "{r}");
    assert_eq!(h.balance("alice").await, before - 150, "nothing taken yet");
    let list = h.challenges(&token).await;
    let challenge = &list["challenges"][0];
    assert!(
        challenge["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("risk check"),
        "{list}"
    );
    let ok = h
        .confirm(&token, challenge["challengeId"].as_str().unwrap())
        .await;
    assert_eq!(ok["paymentStatus"], "SUCCESS", "{ok}");
    h.drain().await;
    let inq = h
        .call("inquiryPayment", json!({"paymentRequestId": "ch-1"}))
        .await;
    assert_eq!(inq["paymentStatus"], "SUCCESS", "{inq}");
    assert_eq!(h.balance("alice").await, before - 400);
    let view = h
        .admin_get(&format!(
            "/admin/v1/payments/{}",
            inq["paymentId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(view["risk"]["verdict"], "CHALLENGE", "{view}");
    let credited: i64 = view["postings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["side"] == "C" && p["account"] == "merchant_payable:TEST_MERCHANT_CLIENT/M1:SGD"
        })
        .map(|p| p["amountMinor"].as_i64().unwrap())
        .sum();
    assert_eq!(credited, 250, "the payment is booked once: {view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blocked_customer_is_rejected_before_any_wallet_call() {
    let h = Harness::new().await;
    put_rules(&h, r#"[{"id": "blocked", "kind": "BLOCKED_CUSTOMER"}]"#).await;
    let (codes, _) = h.device_codes("alice", 2).await;
    let first = h.call("pay", h.pay_body("b-1", 300, &codes[0])).await;
    assert_eq!(code_of(&first), "SUCCESS");
    let view = h
        .admin_get(&format!(
            "/admin/v1/payments/{}",
            first["paymentId"].as_str().unwrap()
        ))
        .await;
    let customer = view["customerId"]
        .as_str()
        .expect("the wallet named its customer");
    // A mistake is named; nothing is blocked.
    let bad = h
        .admin_post(
            "/admin/v1/risk/blocked-customers",
            json!({"wallet": "nopay", "customerId": customer, "reason": "x"}).to_string(),
        )
        .await;
    assert!(
        bad["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no wallet"),
        "{bad}"
    );
    let ok = h
        .admin_post(
            "/admin/v1/risk/blocked-customers",
            json!({"wallet": "sgpay", "customerId": customer, "reason": "chargebacks"}).to_string(),
        )
        .await;
    assert_eq!(ok["added"], true, "{ok}");
    let before = h.balance("alice").await;
    let second = h.call("pay", h.pay_body("b-2", 300, &codes[1])).await;
    assert_eq!(code_of(&second), "RISK_REJECT", "{second}");
    assert_eq!(h.balance("alice").await, before);
    let pid = second["paymentId"].as_str().unwrap();
    let view = h.admin_get(&format!("/admin/v1/payments/{pid}")).await;
    let kinds: Vec<&str> = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["RISK"], "no wallet call: {view}");
    let list = h.admin_get("/admin/v1/risk/blocked-customers").await;
    assert_eq!(list["blockedCustomers"][0]["source"], "operator", "{list}");

    // A wallet reports one of its customers over a signed MPP call, and clears only its own.
    let report = |status: &str, id: &str| {
        let (wallet, body) = (
            h.as_wallet("sgpay"),
            json!({"customerId": id, "riskStatus": status, "reason": "account taken over"}),
        );
        let url = format!("{}{}", h.url, paycode_proto::mpp::CUSTOMER_RISK_PATH);
        async move { wallet.post::<Value, Value>(&url, &body).await.unwrap() }
    };
    let r = report("BLOCKED", "SGPAY-OTHER").await;
    assert_eq!(r["result"]["resultStatus"], "S", "{r}");
    assert!(
        blocked_customers(&h)
            .await
            .contains(&"SGPAY-OTHER=wallet:sgpay".to_string())
    );
    let r = report("CLEARED", customer).await;
    assert_eq!(r["result"]["resultStatus"], "S", "{r}");
    assert!(
        blocked_customers(&h)
            .await
            .contains(&format!("{customer}=operator")),
        "a wallet cannot clear an operator's block"
    );
    report("CLEARED", "SGPAY-OTHER").await;
    assert!(
        !blocked_customers(&h)
            .await
            .iter()
            .any(|b| b.starts_with("SGPAY-OTHER"))
    );
    let r = report("MAYBE", "X").await;
    assert_eq!(r["result"]["resultCode"], "PARAM_ILLEGAL", "{r}");
    // Signed with another key than the wallet's: refused, nothing blocked.
    let forged = h.as_wallet_with_key("sgpay", "fakepay");
    let r: Value = forged
        .post(
            &format!("{}{}", h.url, paycode_proto::mpp::CUSTOMER_RISK_PATH),
            &json!({"customerId": "FORGED", "riskStatus": "BLOCKED"}),
        )
        .await
        .unwrap();
    assert_eq!(r["result"]["resultCode"], "SIGNATURE_INVALID", "{r}");
    assert!(
        !blocked_customers(&h)
            .await
            .iter()
            .any(|b| b.starts_with("FORGED"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shadow_rule_records_without_enforcing_and_counts_in_metrics() {
    let h = Harness::new().await;
    let v = put_rules(
        &h,
        r#"[{"id": "watch-big", "kind": "MAX_AMOUNT", "currency": "SGD", "maxMinor": 100,
             "mode": "SHADOW"}]"#,
    )
    .await;
    let before = h.balance("alice").await;
    let code = h.code_for("alice").await;
    let r = h.call("pay", h.pay_body("s-1", 500, &code)).await;
    assert_eq!(code_of(&r), "SUCCESS", "{r}");
    assert_eq!(h.balance("alice").await, before - 500);
    let decisions = h.admin_get("/admin/v1/risk/decisions").await;
    let d = &decisions["decisions"][0];
    assert_eq!(d["paymentId"], r["paymentId"], "{decisions}");
    assert_eq!(d["verdict"], "ALLOW");
    assert_eq!(d["rulesVersion"], v);
    assert_eq!(d["shadow"][0]["ruleId"], "watch-big");
    assert_eq!(decisions["hitsPerRule"][0]["shadow"], 1);
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", h.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("paycode_risk_rule_hits_total")
                && l.contains("rule=\"watch-big\"")
                && l.contains("mode=\"shadow\"")),
        "{metrics}"
    );
    // Switched on, the same rule enforces.
    put_rules(
        &h,
        r#"[{"id": "watch-big", "kind": "MAX_AMOUNT", "currency": "SGD", "maxMinor": 100}]"#,
    )
    .await;
    let code = h.code_for("alice").await;
    let r = h.call("pay", h.pay_body("s-2", 500, &code)).await;
    assert_eq!(code_of(&r), "RISK_REJECT", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_run_reports_exact_counts_and_changes_nothing() {
    let h = Harness::new().await;
    let v = put_rules(&h, "[]").await;
    // One device of alice pays five times; the fourth payment is refunded.
    let (codes, _) = h.device_codes("alice", 5).await;
    let mut ids = Vec::new();
    for (i, amount) in [100, 200, 300, 6_000, 7_000].iter().enumerate() {
        let r = h
            .call("pay", h.pay_body(&format!("d-{i}"), *amount, &codes[i]))
            .await;
        assert_eq!(code_of(&r), "SUCCESS", "{r}");
        ids.push(r["paymentId"].as_str().unwrap().to_string());
    }
    let refund = h
        .call(
            "refund",
            json!({"refundRequestId": "d-r", "paymentId": ids[3],
                   "refundAmount": {"currency": "SGD", "value": "6000"}}),
        )
        .await;
    assert_eq!(code_of(&refund), "SUCCESS", "{refund}");
    // Bob once, at the other merchant.
    let bob = h.code_for("bob").await;
    let r = h
        .call_as(&h.other, "pay", pay_body_at_o1(&h, "d-bob", 5_500, &bob))
        .await;
    assert!(
        ["SUCCESS", "PAYMENT_IN_PROCESS"].contains(&code_of(&r)),
        "{r}"
    );
    let payments_before = h
        .sql_i64("SELECT COUNT(*) FROM payments WHERE ?1 = ?1", String::new())
        .await;

    let candidate = r#"[
        {"id": "ceiling", "kind": "MAX_AMOUNT", "currency": "SGD", "maxMinor": 5000},
        {"id": "burst", "kind": "CUSTOMER_VELOCITY", "windowMinutes": 60, "max": 3, "action": "CHALLENGE"},
        {"id": "replay", "kind": "CODE_REPLAY"},
        {"id": "o1-only", "kind": "BLOCKED_MERCHANT", "merchant": "TEST_OTHER_CLIENT/O1", "mode": "SHADOW"}
    ]"#;
    let report = h
        .admin_post("/admin/v1/risk/try?since=1h", candidate.to_string())
        .await;
    assert_eq!(report["payments"], 6, "{report}");
    let rule = |id: &str| {
        report["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["ruleId"] == id)
            .unwrap()
            .clone()
    };
    let ceiling = rule("ceiling");
    assert_eq!(ceiling["wouldReject"], 3, "{ceiling}");
    assert_eq!(ceiling["ofWhichRefunded"], 1, "{ceiling}");
    let burst = rule("burst");
    assert_eq!(burst["wouldChallenge"], 2, "{burst}");
    assert_eq!(burst["ofWhichPaid"], 2);
    assert_eq!(burst["ofWhichRefunded"], 1);
    assert_eq!(rule("replay")["evaluable"], false);
    assert_eq!(rule("o1-only")["wouldReject"], 1);
    assert_eq!(rule("o1-only")["mode"], "SHADOW");
    assert_eq!(report["wouldReject"], 3);
    assert_eq!(
        report["wouldChallenge"], 0,
        "every challenged one is rejected too"
    );
    assert_eq!(report["wouldAllow"], 3);

    // Nothing changed: the rules in force and the stored payments.
    let stored = reqwest::Client::new()
        .get(format!("{}/admin/v1/risk/rules", h.url))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(stored.headers()["rules-version"], v.to_string().as_str());
    assert_eq!(stored.text().await.unwrap(), "[]");
    assert_eq!(
        h.sql_i64("SELECT COUNT(*) FROM payments WHERE ?1 = ?1", String::new())
            .await,
        payments_before
    );
    // A candidate with a mistake is refused, naming the rule.
    let bad = h
        .admin_post(
            "/admin/v1/risk/try?since=1h",
            r#"[{"id": "x", "kind": "CUSTOMER_VELOCITY", "max": 3}]"#.to_string(),
        )
        .await;
    assert!(
        bad["message"]
            .as_str()
            .unwrap_or_default()
            .contains(r#"rules[0] ("x").windowMinutes"#),
        "{bad}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rules_and_rates_replaced_on_one_process_reach_another() {
    let h = Harness::new().await;
    let other = paycode_acquirer::Acquirer::open(h.acq.config().clone())
        .await
        .unwrap();
    let v = put_rules(&h, r#"[{"id": "c", "kind": "CODE_REPLAY"}]"#).await;
    assert_ne!(other.risk_rules().version, v);
    other.reload_risk_rules().await.unwrap();
    assert_eq!(other.risk_rules().version, v);
    assert_eq!(other.risk_rules().rules[0].id, "c");
    // The same list again keeps its version.
    assert_eq!(
        put_rules(&h, r#"[{"id": "c", "kind": "CODE_REPLAY"}]"#).await,
        v
    );
    // Rates replaced on one process reach the other the same way.
    let mids =
        |a: &paycode_acquirer::Acquirer| format!("{:?}", a.rates().mids().collect::<Vec<_>>());
    let rates = "mid USD/SGD 1.2500\nmid EUR/SGD 1.4500\n";
    h.acq.set_rate_file(rates.to_string()).await.unwrap();
    assert_ne!(mids(&other), mids(&h.acq));
    other.reload_rates().await.unwrap();
    assert_eq!(mids(&other), mids(&h.acq));
}

/// A merchant rotates its key while it keeps paying: version 2 is added beside version 1, the
/// merchant moves to it, version 1 is retired. No payment signed with an active key is refused
/// at any point; after the retirement a request signed with version 1 is `KEY_NOT_FOUND` and
/// stores nothing; the wallet charged exactly the payments that succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merchant_key_is_rotated_while_the_merchant_keeps_paying() {
    let h = Harness::new().await;
    let v1 = h.merchant_with_key("merchant", 1);
    let v2 = h.merchant_with_key("merchant-2027", 2);
    let before = h.balance("alice").await;
    let (codes, _) = h.device_codes("alice", 12).await;
    let set_key = |version: u32, key_name: &str, active: bool| {
        let body = json!({"keyVersion": version, "active": active,
                          "publicKey": key(key_name).public_key().to_base64()});
        let h = &h;
        async move {
            let path = format!("/admin/v1/clients/{CLIENT}/keys");
            let r = h.admin_post(&path, body.to_string()).await;
            assert_eq!(r["result"], "SUCCESS", "{r}");
        }
    };
    let pay = |client: &paycode_http::SignedClient, i: usize| {
        let (client, body) = (
            client.clone(),
            h.pay_body(&format!("rot-{i}"), 100, &codes[i]),
        );
        let url = format!("{}/ams/api/v1/payments/pay", h.url);
        async move { client.post::<Value, Value>(&url, &body).await.unwrap() }
    };
    let mut paid = 0;
    for i in 0..12 {
        match i {
            3 => set_key(2, "merchant-2027", true).await,
            9 => set_key(1, "merchant", false).await,
            _ => {}
        }
        // Payments 0-5 are signed with version 1, 6-11 with version 2; from 3 to 8 both work.
        let client = if i < 6 { &v1 } else { &v2 };
        let r = pay(client, i).await;
        assert_eq!(code_of(&r), "SUCCESS", "payment {i}: {r}");
        paid += 100;
    }
    let (late, _) = h.device_codes("alice", 1).await;
    let refused = v1
        .post::<Value, Value>(
            &format!("{}/ams/api/v1/payments/pay", h.url),
            &h.pay_body("rot-late", 100, &late[0]),
        )
        .await
        .unwrap();
    assert_eq!(code_of(&refused), "KEY_NOT_FOUND", "{refused}");
    let stored = h
        .sql_i64(
            "SELECT COUNT(*) FROM payments WHERE payment_request_id = ?1",
            "rot-late".to_string(),
        )
        .await;
    assert_eq!(stored, 0, "a refused request stores nothing");
    assert_eq!(h.balance("alice").await, before - paid);
}

/// System-integrator mode: the other client, holding an `Agent-Token` for merchant M1, pays and
/// inquires as M1's client within the token's scope; outside it (another operation, another
/// merchant, the token used by another client, revoked, expired) the answer is `ACCESS_DENIED`
/// and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_integrator_acts_for_one_merchant_with_an_agent_token_within_its_grant() {
    let h = Harness::new().await;
    let issue = |scope: Value, life_s: i64| {
        let body = json!({"integratorClientId": OTHER_CLIENT, "clientId": CLIENT,
                          "referenceMerchantId": MERCHANT, "scope": scope, "expiresInS": life_s});
        h.admin_post("/admin/v1/agent-tokens", body.to_string())
    };
    let bad = issue(json!(["pay", "fly"]), 3600).await;
    assert!(
        bad["message"]
            .as_str()
            .unwrap()
            .contains("\"fly\" is not one of"),
        "{bad}"
    );
    let grant = issue(json!(["pay", "inquiryPayment", "refund"]), 3600).await;
    let token = grant["agentToken"]
        .as_str()
        .expect("the token, once")
        .to_string();
    let token_id = grant["tokenId"].as_str().unwrap().to_string();
    let listed = h.admin_get("/admin/v1/agent-tokens").await;
    assert!(
        !listed.to_string().contains(&token),
        "the secret is never listed"
    );
    let agent = h.other.with_agent_token(&token);
    let stored = |rid: &'static str| {
        h.sql_i64(
            "SELECT COUNT(*) FROM payments WHERE payment_request_id = ?1",
            rid.to_string(),
        )
    };

    // Within the grant: the payment is M1's, under M1's client.
    let before = h.balance("alice").await;
    let (codes, _) = h.device_codes("alice", 4).await;
    let paid = h
        .call_as(&agent, "pay", h.pay_body("ag-1", 640, &codes[0]))
        .await;
    assert_eq!(code_of(&paid), "SUCCESS", "{paid}");
    assert_eq!(h.balance("alice").await, before - 640);
    let own = h
        .call("inquiryPayment", json!({"paymentRequestId": "ag-1"}))
        .await;
    assert_eq!(
        own["paymentStatus"], "SUCCESS",
        "the merchant sees it as its own: {own}"
    );
    let via = h
        .call_as(
            &agent,
            "inquiryPayment",
            json!({"paymentRequestId": "ag-1"}),
        )
        .await;
    assert_eq!(via["paymentStatus"], "SUCCESS", "{via}");
    let bare = h
        .call_as(
            &h.other,
            "inquiryPayment",
            json!({"paymentRequestId": "ag-1"}),
        )
        .await;
    assert_eq!(
        code_of(&bare),
        "ORDER_NOT_EXIST",
        "without the token it is not the other's"
    );

    // Outside the grant: nothing is written.
    let cancel = h
        .call_as(&agent, "cancel", json!({"paymentRequestId": "ag-1"}))
        .await;
    assert_eq!(code_of(&cancel), "ACCESS_DENIED", "{cancel}");
    let mut elsewhere = h.pay_body("ag-2", 100, &codes[1]);
    elsewhere["order"]["merchant"]["referenceMerchantId"] = json!("SUSPENDED");
    let r = h.call_as(&agent, "pay", elsewhere).await;
    assert_eq!(code_of(&r), "ACCESS_DENIED", "{r}");
    assert_eq!(stored("ag-2").await, 0);
    let stolen = h.merchant.with_agent_token(&token);
    let r = h
        .call_as(&stolen, "pay", h.pay_body("ag-3", 100, &codes[2]))
        .await;
    assert_eq!(
        code_of(&r),
        "ACCESS_DENIED",
        "a token works for its integrator only: {r}"
    );
    assert_eq!(stored("ag-3").await, 0);
    let forged = h.other.with_agent_token("0000");
    let r = h
        .call_as(&forged, "pay", h.pay_body("ag-4", 100, &codes[2]))
        .await;
    assert_eq!(code_of(&r), "ACCESS_DENIED", "{r}");
    assert_eq!(stored("ag-4").await, 0);

    // Revoked, and expired: refused, nothing written, the customer not charged.
    let revoked = h
        .admin_delete(&format!("/admin/v1/agent-tokens/{token_id}"))
        .await;
    assert_eq!(revoked["result"], "SUCCESS", "{revoked}");
    let r = h
        .call_as(&agent, "pay", h.pay_body("ag-5", 100, &codes[2]))
        .await;
    assert_eq!(code_of(&r), "ACCESS_DENIED", "{r}");
    assert!(
        r["result"]["resultMessage"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{r}"
    );
    let short = issue(json!(["pay"]), 1).await;
    let short_agent = h
        .other
        .with_agent_token(short["agentToken"].as_str().unwrap());
    h.acq.clock().advance_ms(2_000);
    let r = h
        .call_as(&short_agent, "pay", h.pay_body("ag-6", 100, &codes[3]))
        .await;
    assert_eq!(code_of(&r), "ACCESS_DENIED", "{r}");
    assert!(
        r["result"]["resultMessage"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{r}"
    );
    assert_eq!(stored("ag-5").await + stored("ag-6").await, 0);
    assert_eq!(
        h.balance("alice").await,
        before - 640,
        "only the granted payment was charged"
    );
}

/// What wallet answers teach the buyer rules, end to end: a customer's paid history makes an
/// unusually large payment a challenge, and once each phone's first answer named the customer,
/// the attempts of both phones count together.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wallet_answers_build_the_history_and_links_the_buyer_rules_read() {
    let h = Harness::new().await;
    put_rules(
        &h,
        r#"[{"id": "big", "kind": "UNUSUAL_AMOUNT", "scope": "MERCHANT", "minHistory": 3,
             "factor": 5, "action": "CHALLENGE"},
            {"id": "burst", "kind": "CUSTOMER_VELOCITY", "windowMinutes": 10, "max": 6,
             "code": "PAYMENT_COUNT_EXCEED_LIMIT"}]"#,
    )
    .await;
    let before = h.balance("alice").await;
    let (phone_a, _) = h.device_codes("alice", 5).await;
    for (i, code) in phone_a[..3].iter().enumerate() {
        let r = h
            .call("pay", h.pay_body(&format!("hist-{i}"), 100, code))
            .await;
        assert_eq!(code_of(&r), "SUCCESS", "{r}");
    }
    // Three payments of 1.00 at this merchant: 6.00 is above five times their mean.
    let big = h
        .call("pay", h.pay_body("hist-big", 600, &phone_a[3]))
        .await;
    assert_eq!(code_of(&big), "PAYMENT_IN_PROCESS", "challenged: {big}");
    let at_limit = h.call("pay", h.pay_body("hist-ok", 500, &phone_a[4])).await;
    assert_eq!(
        code_of(&at_limit),
        "SUCCESS",
        "five times the mean is not above it: {at_limit}"
    );
    assert_eq!(
        h.balance("alice").await,
        before - 800,
        "the challenged one waits"
    );

    // A second phone of alice: its first payment counts alone (its slot is not linked yet), and
    // its answer links it, so its second sees both phones' six attempts and is refused.
    let (phone_b, _) = h.device_codes("alice", 2).await;
    let first = h.call("pay", h.pay_body("hist-b0", 100, &phone_b[0])).await;
    assert_eq!(code_of(&first), "SUCCESS", "{first}");
    let second = h.call("pay", h.pay_body("hist-b1", 100, &phone_b[1])).await;
    assert_eq!(code_of(&second), "PAYMENT_COUNT_EXCEED_LIMIT", "{second}");
    assert_eq!(h.balance("alice").await, before - 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_the_wallet_freezes_is_blocked_at_the_acquirer_until_unfrozen() {
    let h = Harness::new().await;
    put_rules(&h, r#"[{"id": "blocked", "kind": "BLOCKED_CUSTOMER"}]"#).await;
    let (codes, _) = h.device_codes("alice", 3).await;
    let first = h.call("pay", h.pay_body("f-1", 300, &codes[0])).await;
    assert_eq!(code_of(&first), "SUCCESS", "{first}");
    let view = h
        .admin_get(&format!(
            "/admin/v1/payments/{}",
            first["paymentId"].as_str().unwrap()
        ))
        .await;
    let customer = view["customerId"].as_str().unwrap().to_string();

    // The freeze is reported through the wallet's outbox, signed, and acknowledged once.
    h.wallet.set_frozen("alice", true).await.unwrap();
    h.drain().await;
    assert_eq!(
        blocked_customers(&h).await,
        [format!("{customer}=wallet:sgpay")]
    );
    let before = h.balance("alice").await;
    let second = h.call("pay", h.pay_body("f-2", 300, &codes[1])).await;
    assert_eq!(code_of(&second), "RISK_REJECT", "{second}");
    let view = h
        .admin_get(&format!(
            "/admin/v1/payments/{}",
            second["paymentId"].as_str().unwrap()
        ))
        .await;
    let kinds: Vec<&str> = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["RISK"], "refused before any wallet call: {view}");
    assert!(view["postings"].as_array().unwrap().is_empty(), "{view}");
    assert_eq!(h.balance("alice").await, before);

    // Unfrozen: the block is cleared and the next code pays.
    h.wallet.set_frozen("alice", false).await.unwrap();
    h.drain().await;
    assert!(blocked_customers(&h).await.is_empty());
    let third = h.call("pay", h.pay_body("f-3", 300, &codes[2])).await;
    assert_eq!(code_of(&third), "SUCCESS", "{third}");
    assert_eq!(h.balance("alice").await, before - 300);
}

/// The acquirer's blocked customers as `customerId=source`.
async fn blocked_customers(h: &Harness) -> Vec<String> {
    let l = h.admin_get("/admin/v1/risk/blocked-customers").await;
    l["blockedCustomers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            format!(
                "{}={}",
                b["customerId"].as_str().unwrap(),
                b["source"].as_str().unwrap()
            )
        })
        .collect()
}

/// A store whose settlement items are there already but whose sweep cursor is far behind (a
/// seeded or restored store) is read once, not at every sweep: the cursor moves past events
/// it finds taken in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sweep_over_events_already_taken_in_still_moves_its_cursor() {
    let h = Harness::new().await;
    let paid = h
        .call("pay", h.pay_body("sweep-1", 500, &FakeWallet::code(1)))
        .await;
    assert_eq!(code_of(&paid), "SUCCESS", "{paid}");
    let swept = || async {
        h.acq
            .db()
            .read(|c| {
                c.query_row("SELECT swept_ms FROM settlement_cursor", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(|e| paycode_acquirer::ApiError::from(paycode_db::DbError::Sql(e)))
            })
            .await
            .unwrap()
    };
    assert_eq!(h.acq.settle_now().await.unwrap().n_swept, 1);
    assert!(swept().await > 0);
    h.acq
        .db()
        .write(|c| {
            c.execute("UPDATE settlement_cursor SET swept_ms = 0", [])
                .map_err(|e| paycode_acquirer::ApiError::from(paycode_db::DbError::Sql(e)))
        })
        .await
        .unwrap();
    h.acq.clock().advance_ms(1_000);
    assert_eq!(h.acq.settle_now().await.unwrap().n_swept, 0, "nothing new");
    assert!(
        swept().await >= h.acq.clock().now_ms() - 60_000,
        "the cursor moved past what the sweep read"
    );
    // Idle: a window under an hour leaves the cursor (and the store) alone.
    let at = swept().await;
    h.acq.clock().advance_ms(30 * 60_000);
    h.acq.settle_now().await.unwrap();
    assert_eq!(swept().await, at);
}
