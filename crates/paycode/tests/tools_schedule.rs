//! `paycode pos charge` against a scripted acquirer (signed answers, real HTTP on port 0), for
//! the branches of SPEC §2.8 that a healthy `serve` never takes: no pay answer in time, a payment
//! that has not landed yet, and a cancel whose outcome stays unknown (exit code 3).

use axum::response::Response;
use paycode_http::{SignedRequest, Signer, signed_response};
use paycode_sign::PrivateKey;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_paycode");

/// What the scripted acquirer answers: per endpoint, the answers in order (the last repeats),
/// and how long `pay` takes.
#[derive(Clone, Default)]
struct Script {
    pay: Vec<Value>,
    pay_delay_ms: u64,
    inquiry: Vec<Value>,
    cancel: Vec<Value>,
}

#[derive(Default)]
struct Calls {
    pay: AtomicUsize,
    inquiry: AtomicUsize,
    cancel: AtomicUsize,
}

struct Fake {
    script: Script,
    calls: Calls,
    signer: Signer,
    seen_paths: Mutex<Vec<String>>,
}

fn nth(answers: &[Value], n: usize) -> Value {
    answers
        .get(n)
        .or(answers.last())
        .cloned()
        .unwrap_or(json!({}))
}

async fn handle(fake: Arc<Fake>, req: SignedRequest) -> Response {
    let api = req.path.rsplit('/').next().unwrap_or("").to_string();
    fake.seen_paths.lock().unwrap().push(req.path.clone());
    let body = match api.as_str() {
        "pay" => {
            let n = fake.calls.pay.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(fake.script.pay_delay_ms)).await;
            nth(&fake.script.pay, n)
        }
        "inquiryPayment" => nth(
            &fake.script.inquiry,
            fake.calls.inquiry.fetch_add(1, Ordering::SeqCst),
        ),
        "cancel" => nth(
            &fake.script.cancel,
            fake.calls.cancel.fetch_add(1, Ordering::SeqCst),
        ),
        _ => {
            json!({"result": {"resultCode": "INVALID_API", "resultStatus": "F", "resultMessage": ""}})
        }
    };
    let client_id = req.client_id.clone().unwrap_or_default();
    signed_response(
        &fake.signer,
        &req.path,
        &client_id,
        body.to_string().into_bytes(),
    )
    .await
}

/// Starts the scripted acquirer and writes a `demo.json` pointing at it.
async fn start(script: Script, dir: &Path) -> Arc<Fake> {
    let acquirer_key = PrivateKey::generate().unwrap();
    let merchant_key = PrivateKey::generate().unwrap();
    let fake = Arc::new(Fake {
        script,
        calls: Calls::default(),
        signer: Signer::new(acquirer_key, 1),
        seen_paths: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = fake.clone();
    let app = axum::Router::new().fallback(move |req: SignedRequest| handle(state.clone(), req));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let demo = json!({
        "acquirerUrl": url,
        "clientId": "TEST",
        "merchantPrivateKey": merchant_key.to_pkcs8_base64(),
        "acquirerPublicKey": fake.signer.public_key().to_base64(),
        "referenceMerchantId": "M1",
        "merchantName": "Test Shop",
        "referenceStoreId": "S1",
        "storeName": "Main",
        "merchantMcc": "5812",
        "currency": "SGD",
        "wallets": [],
        "users": [],
    });
    std::fs::write(dir.join("demo.json"), demo.to_string()).unwrap();
    fake
}

fn result(code: &str, status: &str) -> Value {
    json!({"resultCode": code, "resultStatus": status, "resultMessage": code.to_lowercase()})
}

fn inquiry(status: &str) -> Value {
    json!({"result": result("SUCCESS", "S"), "paymentId": "P1", "paymentStatus": status,
           "paymentAmount": {"currency": "SGD", "value": "1250"}})
}

/// Runs `pos charge` with short schedules; returns (exit code, stdout, stderr).
async fn charge(dir: &Path) -> (Option<i32>, String, String) {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(BIN)
            .arg("--data-dir")
            .arg(&dir)
            .args([
                "pos",
                "charge",
                "12.50",
                "SGD",
                "--code",
                "281005021234567812345678",
            ])
            .args(["--inquiry-schedule-ms", "50,50,50,50"])
            .args(["--cancel-retry-ms", "50,50"])
            .args(["--pay-timeout-ms", "300"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_without_answer_in_time_is_inquired_through_not_landed_to_paid() {
    let dir = tempfile::tempdir().unwrap();
    let fake = start(
        Script {
            pay: vec![json!({"result": result("SUCCESS", "S")})],
            pay_delay_ms: 3_000,
            inquiry: vec![
                json!({"result": result("ORDER_NOT_EXIST", "F")}),
                inquiry("PROCESSING"),
                inquiry("SUCCESS"),
            ],
            cancel: vec![],
        },
        dir.path(),
    )
    .await;
    let (code, out, err) = charge(dir.path()).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("PAID"), "{out}");
    assert!(err.contains("no answer to the pay request"), "{err}");
    assert_eq!(fake.calls.inquiry.load(Ordering::SeqCst), 3);
    assert_eq!(fake.calls.cancel.load(Ordering::SeqCst), 0);
    assert!(
        fake.seen_paths
            .lock()
            .unwrap()
            .iter()
            .all(|p| p.starts_with("/ams/api/v1/payments/"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn still_processing_and_cancel_never_answered_ends_unknown_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let fake = start(
        Script {
            pay: vec![json!({"result": result("UNKNOWN_EXCEPTION", "U"), "paymentId": "P1"})],
            pay_delay_ms: 0,
            inquiry: vec![inquiry("PROCESSING")],
            cancel: vec![json!({"result": result("UNKNOWN_EXCEPTION", "U")})],
        },
        dir.path(),
    )
    .await;
    let (code, out, err) = charge(dir.path()).await;
    assert_eq!(code, Some(3), "{out}\n{err}");
    assert!(out.contains("UNKNOWN"), "{out}");
    // The whole inquiry schedule, then the first cancel and its two retries.
    assert_eq!(fake.calls.inquiry.load(Ordering::SeqCst), 4);
    assert_eq!(fake.calls.cancel.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitive_failure_ends_at_once_with_exit_2_and_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let fake = start(
        Script {
            pay: vec![json!({"result": result("USER_BALANCE_NOT_ENOUGH", "F"), "paymentId": "P1"})],
            ..Script::default()
        },
        dir.path(),
    )
    .await;
    let (code, out, err) = charge(dir.path()).await;
    assert_eq!(code, Some(2), "{out}\n{err}");
    assert!(out.contains("FAILED USER_BALANCE_NOT_ENOUGH"), "{out}");
    assert!(out.contains("another payment method"), "{out}");
    assert_eq!(fake.calls.inquiry.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_signed_with_another_key_is_not_trusted_and_is_inquired() {
    let dir = tempfile::tempdir().unwrap();
    let fake = start(
        Script {
            pay: vec![json!({"result": result("SUCCESS", "S")})],
            inquiry: vec![inquiry("SUCCESS")],
            ..Script::default()
        },
        dir.path(),
    )
    .await;
    // Replace the acquirer key in demo.json: every answer now fails verification.
    let path = dir.path().join("demo.json");
    let mut demo: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    demo["acquirerPublicKey"] = json!(PrivateKey::generate().unwrap().public_key().to_base64());
    std::fs::write(&path, demo.to_string()).unwrap();
    let (code, out, err) = charge(dir.path()).await;
    // A success that cannot be verified is not a success: the POS ends unknown (exit 3).
    assert_eq!(code, Some(3), "{out}\n{err}");
    assert!(err.contains("signature"), "{err}");
    assert_eq!(fake.calls.inquiry.load(Ordering::SeqCst), 4);
}
