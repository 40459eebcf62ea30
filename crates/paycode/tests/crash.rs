//! Crash safety: `kill -9` of a running `serve` loses no acknowledged payment, ledger entry or
//! notification; after a restart the pending notifications are delivered. And stores outlive
//! releases: one written by the previous release opens, upgrades and audits clean.

use paycode_http::{SignedClient, Signer};
use paycode_sign::{PrivateKey, PublicKey};
use serde_json::{Value, json};

mod common;
use common::Serve;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn merchant(d: &Value) -> SignedClient {
    SignedClient::new(
        d["clientId"].as_str().unwrap(),
        Signer::new(
            PrivateKey::parse(d["merchantPrivateKey"].as_str().unwrap()).unwrap(),
            1,
        ),
        Some(PublicKey::parse(d["acquirerPublicKey"].as_str().unwrap()).unwrap()),
        Duration::from_secs(20),
    )
}

async fn fresh_code(d: &Value, user: &str) -> String {
    let wallet = d["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == user)
        .unwrap()["wallet"]
        .clone();
    let url = d["wallets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == wallet)
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    common::fresh_code(&url, user, "123456").await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_payment_entry_or_notification() {
    let dir = tempfile::tempdir().unwrap();
    // A merchant notification receiver that refuses everything until told otherwise.
    let accept = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let notify_url = format!("http://{}/notify", listener.local_addr().unwrap());
    {
        let (accept, delivered) = (accept.clone(), delivered.clone());
        let app = axum::Router::new().fallback(move || {
            let (accept, delivered) = (accept.clone(), delivered.clone());
            async move {
                if accept.load(Ordering::SeqCst) {
                    delivered.fetch_add(1, Ordering::SeqCst);
                    (axum::http::StatusCode::OK, r#"{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}"#)
                } else {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down")
                }
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }

    const FAST_RETRIES: (&str, &str) = ("PAYCODE_NOTIFY_SCHEDULE_S", "0,1,1,1,1,1,1,1,1,1,1,1");
    let mut serve = Serve::start_in(dir.path(), &[FAST_RETRIES]);
    let d = serve.demo.clone();
    let client = merchant(&d);
    let pay_url = format!(
        "{}/ams/api/v1/payments/pay",
        d["acquirerUrl"].as_str().unwrap()
    );
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let code = fresh_code(&d, "alice").await;
        let body = json!({
            "productCode": "IN_STORE_PAYMENT", "paymentRequestId": format!("crash-{i}"),
            "paymentAmount": {"currency": "SGD", "value": "150"},
            "paymentMethod": {"paymentMethodType": "CONNECT_WALLET", "paymentMethodId": code},
            "paymentNotifyUrl": notify_url,
            "order": {"orderDescription": "tea", "merchant": {"referenceMerchantId": d["referenceMerchantId"], "merchantName": "Kopi & Co", "merchantMCC": "5814",
                      "store": {"referenceStoreId": d["referenceStoreId"], "storeName": "Raffles", "storeMCC": "5814"}}}
        });
        let r: Value = client.post(&pay_url, &body).await.unwrap();
        assert_eq!(r["result"]["resultCode"], "SUCCESS", "{r}");
        acknowledged.push(r["paymentId"].as_str().unwrap().to_string());
    }
    serve.stop(); // SIGKILL

    accept.store(true, Ordering::SeqCst);
    let serve = Serve::start_in(dir.path(), &[FAST_RETRIES]);
    let d = serve.demo.clone();
    let client = merchant(&d);
    let base = d["acquirerUrl"].as_str().unwrap().to_string();
    let token = serve.admin_token();
    for (i, pid) in acknowledged.iter().enumerate() {
        let r: Value = client
            .post(
                &format!("{base}/ams/api/v1/payments/inquiryPayment"),
                &json!({"paymentRequestId": format!("crash-{i}")}),
            )
            .await
            .unwrap();
        assert_eq!(r["paymentStatus"], "SUCCESS", "{r}");
        assert_eq!(r["paymentId"], pid.as_str());
        let timeline: Value = reqwest::Client::new()
            .get(format!("{base}/admin/v1/payments/{pid}"))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let postings = timeline["postings"].as_array().unwrap();
        assert!(
            !postings.is_empty(),
            "the ledger entry survived: {timeline}"
        );
        assert_eq!(timeline["notifications"].as_array().unwrap().len(), 1);
    }
    // The notifications that could not be delivered before the crash are delivered now.
    let deadline = Instant::now() + Duration::from_secs(30);
    while delivered.load(Ordering::SeqCst) < acknowledged.len() {
        assert!(
            Instant::now() < deadline,
            "only {} notifications delivered",
            delivered.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_gracefully_and_leaves_a_store_that_audits_clean() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start_in(dir.path(), &[]);
    let d = serve.demo.clone();
    let client = merchant(&d);
    let pay_url = format!(
        "{}/ams/api/v1/payments/pay",
        d["acquirerUrl"].as_str().unwrap()
    );
    // Payments in flight while the stop arrives: each either completes or was never accepted.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let code = fresh_code(&d, "alice").await;
        let (client, pay_url, d) = (client.clone(), pay_url.clone(), d.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({
                "productCode": "IN_STORE_PAYMENT", "paymentRequestId": format!("term-{i}"),
                "paymentAmount": {"currency": "SGD", "value": "120"},
                "paymentMethod": {"paymentMethodType": "CONNECT_WALLET", "paymentMethodId": code},
                "order": {"orderDescription": "tea", "merchant": {"referenceMerchantId": d["referenceMerchantId"],
                          "store": {"referenceStoreId": d["referenceStoreId"]}}}
            });
            client.post::<Value, Value>(&pay_url, &body).await
        }));
    }
    let status = tokio::task::spawn_blocking(move || {
        let s = serve.terminate(Duration::from_secs(20));
        (s, serve)
    })
    .await
    .unwrap();
    let (status, _serve) = status;
    assert!(
        status.is_some_and(|s| s.success()),
        "serve did not stop cleanly: {status:?}"
    );
    // Every answer given is either final and true, or an honest "unknown" (never a wrong F).
    let mut paid = Vec::new();
    for t in tasks {
        if let Ok(r) = t.await.unwrap() {
            let code = r["result"]["resultCode"].as_str().unwrap_or("").to_string();
            assert!(
                ["SUCCESS", "UNKNOWN_EXCEPTION", "PAYMENT_IN_PROCESS"].contains(&code.as_str()),
                "{r}"
            );
            if code == "SUCCESS" {
                paid.push(r["paymentRequestId"].as_str().unwrap().to_string());
            }
        }
    }
    // The store is consistent after the stop, whatever was in flight.
    let out = common::paycode(dir.path()).arg("audit").output().unwrap();
    let stdout = common::text(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        common::text(&out.stderr)
    );
    assert!(stdout.starts_with("OK: "), "{stdout}");
    // After a restart, what was answered as paid is paid.
    let serve = Serve::start_in(dir.path(), &[]);
    let d = serve.demo.clone();
    let client = merchant(&d);
    let base = d["acquirerUrl"].as_str().unwrap().to_string();
    for rid in paid {
        let r: Value = client
            .post(
                &format!("{base}/ams/api/v1/payments/inquiryPayment"),
                &json!({"paymentRequestId": rid}),
            )
            .await
            .unwrap();
        assert_eq!(r["paymentStatus"], "SUCCESS", "{r}");
    }
}

/// The `.db` files of a data directory.
fn sqlite_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "db"))
        .collect();
    files.sort();
    files
}

/// What version 2 of the acquirer's schema added, taken away again.
const ACQUIRER_V2_UNDONE: &str = "DROP TABLE agent_tokens; DROP TABLE operator_log; \
    DROP TABLE buyer_attempts; DROP TABLE buyer_customers; \
    DROP TABLE buyer_history; DROP TABLE blocked_customers; DROP TABLE risk_decisions; \
    ALTER TABLE risk_rules DROP COLUMN version; ALTER TABLE payments DROP COLUMN buyer; \
    ALTER TABLE merchants DROP COLUMN country; ALTER TABLE wallets DROP COLUMN countries; \
    ALTER TABLE wallets DROP COLUMN transaction_currencies;";

/// What version 3 added to the acquirer's store (the dashboard), taken away again.
const ACQUIRER_V3_UNDONE: &str = "DROP TABLE dashboard_users; DROP TABLE dashboard_sessions; \
    DROP INDEX payments_last4; DROP INDEX payments_client_created; \
    DROP INDEX payments_wallet_created; DROP INDEX payments_status_created; \
    DROP INDEX refunds_created; ALTER TABLE payments DROP COLUMN code_last4;";

/// The previous release kept no migration record: its files are this release's version-1
/// tables without `schema_migrations`. Such a store opens, is recorded at version 1 with its
/// rows untouched, audits clean, and its payments answer as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_the_previous_release_opens_upgrades_and_audits_clean() {
    let dir = tempfile::tempdir().unwrap();
    // The previous release ran on SQLite only.
    common::use_sqlite(dir.path());
    let mut serve = Serve::start_in(dir.path(), &[]);
    let d = serve.demo.clone();
    let client = merchant(&d);
    let base = d["acquirerUrl"].as_str().unwrap().to_string();
    let code = fresh_code(&d, "alice").await;
    let body = json!({
        "productCode": "IN_STORE_PAYMENT", "paymentRequestId": "before-upgrade",
        "paymentAmount": {"currency": "SGD", "value": "320"},
        "paymentMethod": {"paymentMethodType": "CONNECT_WALLET", "paymentMethodId": code},
        "order": {"orderDescription": "tea", "merchant": {"referenceMerchantId": d["referenceMerchantId"],
                  "store": {"referenceStoreId": d["referenceStoreId"]}}}
    });
    let paid: Value = client
        .post(&format!("{base}/ams/api/v1/payments/pay"), &body)
        .await
        .unwrap();
    assert_eq!(paid["result"]["resultCode"], "SUCCESS", "{paid}");
    serve.stop();
    let files = sqlite_files(dir.path());
    assert!(files.len() >= 2, "{files:?}");
    let count_of = |c: &paycode_db::rusqlite::Connection, sql: &str| -> i64 {
        c.query_row(sql, [], |r| r.get(0)).unwrap()
    };
    let mut payments_before = Vec::new();
    for f in &files {
        let c = paycode_db::rusqlite::Connection::open(f).unwrap();
        // Back to the first release's schema: no migration record, and on the acquirer's
        // store none of what version 2 added.
        c.execute_batch("DROP TABLE schema_migrations").unwrap();
        if count_of(
            &c,
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'risk_decisions'",
        ) == 1
        {
            c.execute_batch(ACQUIRER_V3_UNDONE).unwrap();
            c.execute_batch(ACQUIRER_V2_UNDONE).unwrap();
        }
        payments_before.push(count_of(&c, "SELECT COUNT(*) FROM payments"));
    }
    let serve = Serve::start_in(dir.path(), &[]);
    let base = serve.demo["acquirerUrl"].as_str().unwrap().to_string();
    for (f, before) in files.iter().zip(&payments_before) {
        let c = paycode_db::rusqlite::Connection::open(f).unwrap();
        assert_eq!(
            count_of(
                &c,
                "SELECT COUNT(*) FROM schema_migrations WHERE version = 1"
            ),
            1,
            "{}",
            f.display()
        );
        assert_eq!(count_of(&c, "SELECT COUNT(*) FROM payments"), *before);
        let acquirer = count_of(
            &c,
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'risk_rules'",
        ) == 1;
        assert_eq!(
            count_of(
                &c,
                "SELECT COUNT(*) FROM schema_migrations WHERE version = 2"
            ),
            i64::from(acquirer),
            "{}: the acquirer's store is upgraded to version 2",
            f.display()
        );
        if acquirer {
            assert_eq!(
                count_of(
                    &c,
                    "SELECT COUNT(*) FROM schema_migrations WHERE version = 3"
                ),
                1
            );
            // The dashboard's search by the code's last digits finds the old payment too.
            assert_eq!(
                count_of(
                    &c,
                    "SELECT COUNT(*) FROM payments WHERE code_last4 = substr(code_masked, -4) \
                     AND length(code_last4) = 4"
                ),
                *before
            );
        }
    }
    let r: Value = client
        .post(
            &format!("{base}/ams/api/v1/payments/inquiryPayment"),
            &json!({"paymentRequestId": "before-upgrade"}),
        )
        .await
        .unwrap();
    assert_eq!(r["paymentStatus"], "SUCCESS", "{r}");
    let out = common::paycode(dir.path()).arg("audit").output().unwrap();
    let stdout = common::text(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        common::text(&out.stderr)
    );
    assert!(stdout.starts_with("OK: "), "{stdout}");
    drop(serve);
}
