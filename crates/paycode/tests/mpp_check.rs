//! The wallet conformance kit (`paycode mpp-check`): it passes against the reference wallet,
//! which charges exactly what the scenarios paid, and it fails the right scenarios, with the
//! reason, against deliberately wrong wallets.

mod common;

use axum::body::Bytes;
use axum::http::HeaderMap;
use common::{BIN, Serve};
use paycode_http::Signer;
use paycode_sign::PrivateKey;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Runs the kit; (exit code, stdout).
fn kit(
    url: &str,
    wallet_pub: &Path,
    acquirer_key: &Path,
    code: &str,
    confirm: &str,
) -> (i32, String) {
    let out = std::process::Command::new(BIN)
        .args([
            "mpp-check",
            "--url",
            url,
            "--currency",
            "SGD",
            "--timeout-ms",
            "5000",
        ])
        .arg("--wallet-public-key")
        .arg(wallet_pub)
        .arg("--acquirer-key")
        .arg(acquirer_key)
        .args(["--code-command", code, "--confirm-command", confirm])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kit_passes_against_the_reference_wallet_which_charges_what_was_paid() {
    let serve = Serve::start();
    let dir = serve.data_dir();
    let key =
        PrivateKey::parse(&std::fs::read_to_string(dir.join("keys/wallet-sgpay.key")).unwrap())
            .unwrap();
    let wallet_pub = dir.join("sgpay.pub");
    std::fs::write(&wallet_pub, key.public_key().to_base64()).unwrap();
    let sgpay = serve.demo["wallets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "sgpay")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let balance = || async {
        let v: Value = common::get_json(
            &format!("{sgpay}/admin/v1/users/alice"),
            &serve.admin_token(),
        )
        .await;
        v["balance"]["value"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    let before = balance().await;
    let paycode = format!("{BIN} --data-dir {}", dir.display());
    let (code, out) = kit(
        &sgpay,
        &wallet_pub,
        &dir.join("keys/acquirer.key"),
        &format!("{paycode} wallet code --user alice --digits"),
        &format!("echo 123456 | {paycode} wallet confirm --user alice --password-stdin --wait-s 3"),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("10 scenarios, 0 failed"), "{out}");
    assert_eq!(out.matches("PASS  ").count(), 10, "{out}");
    // Paid: 1.00 at once, 1.00 retried (charged once), 1.00 after the password, and 1.00
    // refunded in full; the refused, cancelled and closed payments charged nothing.
    assert_eq!(before - balance().await, 300, "{out}");
}

#[derive(Clone, Copy, PartialEq)]
enum Wrong {
    /// Every pay stays in process, however small.
    UForever,
    /// A retried pay is paid again, under a new payment id.
    DoubleDebit,
    /// Answers are signed over another path than the one asked.
    SignsWrongPath,
}

/// A wallet double with one deliberate fault; answers signed with `key`. Its URL.
async fn wrong_wallet(fault: Wrong, key: PrivateKey) -> String {
    let signer = Signer::new(key, 1);
    let n = Arc::new(AtomicU32::new(0));
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
        let (signer, n) = (signer.clone(), n.clone());
        async move {
            let path = uri.path().to_string();
            let req: Value = serde_json::from_slice(&body).unwrap_or_default();
            let ok = json!({"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"});
            let answer = match path.rsplit('/').next().unwrap_or("") {
                "pay" if fault == Wrong::UForever => json!({"result":
                    {"resultCode": "PAYMENT_IN_PROCESS", "resultStatus": "U", "resultMessage": "wait"}}),
                "pay" => json!({"result": ok, "paymentId": format!("W{}", n.fetch_add(1, Ordering::SeqCst)),
                    "paymentTime": "2026-12-01T12:00:00Z", "payToAmount": req["payToAmount"]}),
                "inquiryPayment" => json!({"result": ok, "paymentResult": ok, "paymentId": "W0"}),
                "refund" => json!({"result": ok, "refundId": format!("R{}", n.fetch_add(1, Ordering::SeqCst))}),
                _ => json!({"result": ok, "cancelTime": "2026-12-01T12:00:00Z"}),
            };
            let client_id = headers.get("client-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let signed_path = if fault == Wrong::SignsWrongPath { "/aps/api/v1/payments/other" } else { &path };
            paycode_http::signed_response(&signer, signed_path, &client_id, serde_json::to_vec(&answer).unwrap()).await
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kit_fails_wrong_wallets_in_the_right_scenario_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let acquirer_key = dir.path().join("acquirer.key");
    std::fs::write(
        &acquirer_key,
        PrivateKey::generate().unwrap().to_pkcs8_base64(),
    )
    .unwrap();
    for (fault, scenario, reason) in [
        (
            Wrong::UForever,
            "pay answered S and inquired alike",
            "pay of a small amount: expected S SUCCESS, got U PAYMENT_IN_PROCESS",
        ),
        (
            Wrong::DoubleDebit,
            "retried pay is idempotent, changed pay inconsistent",
            "a retried pay made another payment",
        ),
        (
            Wrong::SignsWrongPath,
            "pay answered S and inquired alike",
            "answer signature",
        ),
    ] {
        let key = PrivateKey::generate().unwrap();
        let wallet_pub = dir.path().join("wallet.pub");
        std::fs::write(&wallet_pub, key.public_key().to_base64()).unwrap();
        let url = wrong_wallet(fault, key).await;
        let (code, out) = kit(
            &url,
            &wallet_pub,
            &acquirer_key,
            "echo 281005021234567890123456",
            "true",
        );
        assert_eq!(code, 1, "{out}");
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("FAIL  {scenario}:")))
            .unwrap_or_else(|| panic!("{scenario} did not fail:\n{out}"));
        assert!(line.contains(reason), "{line}");
    }
}
