//! Onboarding a wallet the acquirer has never seen, end to end, the way an operator does it: a
//! wallet deployed on its own (its own process, keys, store and users), registered with the
//! CLI with its route switched off, checked with the conformance kit, switched on, and paid.

mod common;

use common::{BIN, Serve};
use paycode_http::{SignedClient, Signer};
use paycode_sign::{PrivateKey, PublicKey};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CII: &str = "289990";

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_the_acquirer_never_saw_is_registered_checked_enabled_and_paid() {
    let serve = Serve::start();
    let demo = serve.demo.clone();
    let ours = tempfile::tempdir().unwrap();
    let d = ours.path();

    // The wallet's own deployment: keys, the acquirer's public key, a store, an operator token.
    let wallet_key = PrivateKey::generate().unwrap();
    std::fs::write(d.join("zzpay.key"), wallet_key.to_pkcs8_base64()).unwrap();
    std::fs::write(d.join("zzpay.pub"), wallet_key.public_key().to_base64()).unwrap();
    std::fs::write(
        d.join("acquirer.pub"),
        demo["acquirerPublicKey"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(d.join("admin-token"), "zz-operator\n").unwrap();
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    std::fs::write(
        d.join("zzpay.toml"),
        format!(
            "[[wallets]]\nname = \"zzpay\"\ncii = \"{CII}\"\ncurrency = \"SGD\"\n\
             listen = \"127.0.0.1:{port}\"\ndb = \"zzpay.db\"\nprivate_key_file = \"zzpay.key\"\n\
             acquirer_public_key_file = \"acquirer.pub\"\nadmin_token_file = \"admin-token\"\n"
        ),
    )
    .unwrap();
    let _wallet = Child(
        Command::new(BIN)
            .arg("--data-dir")
            .arg(d)
            .args(["serve", "--config"])
            .arg(d.join("zzpay.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !common::reachable(&url) {
        assert!(Instant::now() < deadline, "the wallet did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Its test user, created by its own operator.
    let created: Value = reqwest::Client::new()
        .post(format!("{url}/admin/v1/users"))
        .bearer_auth("zz-operator")
        .json(
            &json!({"name": "zed", "password": "246810", "balanceMinor": 50_000,
            "passwordFreePerPaymentMinor": 1_000, "passwordFreeDailyMinor": 10_000,
            "hardLimitPerPaymentMinor": 20_000, "hardLimitDailyMinor": 40_000}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["result"]["resultStatus"], "S", "{created}");
    // The customer's phone: the app, pointed at this wallet.
    let mut phone = demo.clone();
    phone["wallets"] = json!([{"name": "zzpay", "url": url, "cii": CII, "currency": "SGD"}]);
    phone["users"] = json!([{"name": "zed", "wallet": "zzpay", "currency": "SGD",
        "password": "246810", "role": "everyday"}]);
    std::fs::write(d.join("demo.json"), phone.to_string()).unwrap();

    // 1. Registered with the CLI, route switched off.
    let register = |enabled: bool| {
        let file = d.join(format!("zzpay-{enabled}.json"));
        std::fs::write(
            &file,
            json!({"name": "zzpay", "pspName": "ZZPay", "baseUrl": url,
                "publicKey": wallet_key.public_key().to_base64(), "currencies": ["SGD"],
                "enabled": enabled, "routes": [{"kind": "CII", "pattern": CII}]})
            .to_string(),
        )
        .unwrap();
        let out = serve
            .cmd()
            .args(["admin", "wallets", "add"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    register(false);
    let merchant = SignedClient::new(
        demo["clientId"].as_str().unwrap(),
        Signer::new(
            PrivateKey::parse(demo["merchantPrivateKey"].as_str().unwrap()).unwrap(),
            1,
        ),
        Some(PublicKey::parse(demo["acquirerPublicKey"].as_str().unwrap()).unwrap()),
        Duration::from_secs(30),
    );
    let phone_cmd = format!("{BIN} --data-dir {}", d.display());
    let code = || {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{phone_cmd} wallet code --user zed --digits"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let pay = |id: &str, code: String| {
        let body = json!({
            "productCode": "IN_STORE_PAYMENT", "paymentRequestId": id,
            "paymentAmount": {"currency": "SGD", "value": "450"},
            "paymentMethod": {"paymentMethodType": "CONNECT_WALLET", "paymentMethodId": code},
            "order": {"orderDescription": "2 kopi", "merchant": {
                "referenceMerchantId": demo["referenceMerchantId"], "merchantName": "Kopi & Co",
                "merchantMCC": "5814", "store": {"referenceStoreId": demo["referenceStoreId"],
                "storeName": "Raffles", "storeMCC": "5814"}}}
        });
        let (merchant, url) = (
            merchant.clone(),
            format!(
                "{}/ams/api/v1/payments/pay",
                demo["acquirerUrl"].as_str().unwrap()
            ),
        );
        async move { merchant.post::<Value, Value>(&url, &body).await.unwrap() }
    };
    let r = pay("zz-before", code()).await;
    assert_eq!(
        r["result"]["resultCode"], "INVALID_CODE",
        "a switched-off route: {r}"
    );

    // 2. The conformance kit, against the wallet directly.
    let out = Command::new(BIN)
        .args(["mpp-check", "--url", &url, "--currency", "SGD"])
        .arg("--wallet-public-key")
        .arg(d.join("zzpay.pub"))
        .arg("--acquirer-key")
        .arg(serve.data_dir().join("keys/acquirer.key"))
        .args([
            "--code-command",
            &format!("{phone_cmd} wallet code --user zed --digits"),
        ])
        .args([
            "--confirm-command",
            &format!(
                "echo 246810 | {phone_cmd} wallet confirm --user zed --password-stdin --wait-s 3"
            ),
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("10 scenarios, 0 failed"), "{report}");
    let balance = || async {
        let v = common::get_json(&format!("{url}/admin/v1/users/zed"), "zz-operator").await;
        v["balance"]["value"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    let after_kit = balance().await;
    assert_eq!(
        after_kit,
        50_000 - 300,
        "the kit's scenarios paid 3.00 in all"
    );

    // 3. Switched on, and paid through the acquirer.
    register(true);
    let r = pay("zz-after", code()).await;
    assert_eq!(r["result"]["resultCode"], "SUCCESS", "{r}");
    assert_eq!(balance().await, after_kit - 450);
    let view = serve_admin(
        &serve,
        &format!("/admin/v1/payments/{}", r["paymentId"].as_str().unwrap()),
    )
    .await;
    assert_eq!(view["wallet"], "zzpay", "{view}");
    // Booked: the new wallet owes the 4.50, the merchant and the fee share it.
    let sum = |prefix: &str, side: &str| -> i64 {
        view["postings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["account"].as_str().unwrap().starts_with(prefix) && p["side"] == side)
            .map(|p| p["amountMinor"].as_i64().unwrap())
            .sum()
    };
    assert_eq!(sum("wallet_receivable:zzpay:SGD", "D"), 450, "{view}");
    assert_eq!(
        sum("merchant_payable:", "C") + sum("fee_revenue:", "C"),
        450,
        "{view}"
    );
    let audit = serve.cmd().arg("audit").output().unwrap();
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
}

async fn serve_admin(serve: &Serve, path: &str) -> Value {
    common::get_json(
        &format!("{}{path}", serve.demo["acquirerUrl"].as_str().unwrap()),
        &serve.admin_token(),
    )
    .await
}
