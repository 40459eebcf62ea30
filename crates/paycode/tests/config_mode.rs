//! `serve --config`: only what the file configures runs, with no demo data; merchants, keys,
//! wallets and routes are then registered through the admin API, and a payment goes through.

mod common;

use paycode_http::{SignedClient, Signer};
use paycode_sign::PrivateKey;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_acquirer_and_wallet_are_set_up_through_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let (acq_key, wallet_key, merchant_key) = (
        PrivateKey::generate().unwrap(),
        PrivateKey::generate().unwrap(),
        PrivateKey::generate().unwrap(),
    );
    std::fs::write(dir.path().join("acquirer.key"), acq_key.to_pkcs8_base64()).unwrap();
    std::fs::write(
        dir.path().join("acquirer.pub"),
        acq_key.public_key().to_base64(),
    )
    .unwrap();
    std::fs::write(dir.path().join("wallet.key"), wallet_key.to_pkcs8_base64()).unwrap();
    std::fs::write(dir.path().join("admin-token"), "tok-123\n").unwrap();
    // On PostgreSQL each part names its database in its own section.
    let database = common::database_url(dir.path())
        .map(|url| format!("database_url = \"{url}\"\n"))
        .unwrap_or_default();
    let toml = r#"
[acquirer]
listen = "127.0.0.1:0"
db = "acquirer.db"
private_key_file = "acquirer.key"
admin_token_file = "admin-token"
time_zone = "Asia/Singapore"
[acquirer.limits]
notify_schedule_s = [0, 1]
request_time_window_s = 120
guess_per_terminal = { failures_max = 20, window_s = 600 }

[[wallets]]
name = "mywallet"
cii = "281777"
currency = "SGD"
listen = "127.0.0.1:0"
db = "wallet.db"
private_key_file = "wallet.key"
acquirer_public_key_file = "acquirer.pub"
admin_token_file = "admin-token"
request_time_window_s = 120
guess_per_slot = { failures_max = 10, window_s = 600 }
"#
    .replace(
        "db = \"acquirer.db\"\n",
        &format!("db = \"acquirer.db\"\n{database}"),
    )
    .replace(
        "db = \"wallet.db\"\n",
        &format!("db = \"wallet.db\"\n{database}"),
    );
    std::fs::write(dir.path().join("paycode.toml"), toml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_paycode"))
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "serve",
            "--config",
        ])
        .arg(dir.path().join("paycode.toml"))
        .env("PAYCODE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut acquirer, mut wallet) = (String::new(), String::new());
    for line in lines.by_ref() {
        let line = line.unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http"))
            .map(str::to_string);
        if line.contains("acquirer") {
            acquirer = url.unwrap();
        } else if line.contains("wallet mywallet") {
            wallet = url.unwrap();
        } else if line.starts_with("paycode is running") {
            break;
        }
    }
    assert!(!acquirer.is_empty() && !wallet.is_empty());
    assert!(
        !dir.path().join("demo.json").exists(),
        "no demo data in config mode"
    );

    let http = reqwest::Client::new();
    let admin = |path: &str, body: Value| {
        http.post(format!("{acquirer}/admin/v1/{path}"))
            .bearer_auth("tok-123")
            .json(&body)
            .send()
    };
    // Bad input names the field and writes nothing.
    let bad = admin(
        "merchants",
        json!({"clientId": "NOPE", "referenceMerchantId": "M", "name": "x", "mcc": "5812",
        "currencies": ["SGD"], "settlementCurrency": "SGD"}),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("clientId"));
    for (path, body) in [
        ("clients", json!({"clientId": "ACME", "name": "Acme"})),
        (
            "clients/ACME/keys",
            json!({"keyVersion": 2, "publicKey": merchant_key.public_key().to_base64()}),
        ),
        (
            "merchants",
            json!({"clientId": "ACME", "referenceMerchantId": "ACME-1", "name": "Acme Store", "mcc": "5411",
            "currencies": ["SGD"], "settlementCurrency": "SGD", "feeBps": 150, "timeZone": "Asia/Singapore",
            "stores": [{"referenceStoreId": "ST-1", "name": "Acme Orchard", "mcc": "5411"}]}),
        ),
        (
            "wallets",
            json!({"name": "mywallet", "baseUrl": wallet, "publicKey": wallet_key.public_key().to_base64(),
            "currencies": ["SGD"], "routes": [{"kind": "CII", "pattern": "281777"}]}),
        ),
    ] {
        let r = admin(path, body).await.unwrap();
        assert!(
            r.status().is_success(),
            "{path}: {}",
            r.text().await.unwrap()
        );
    }
    let registry: Value = http
        .get(format!("{acquirer}/admin/v1/registry"))
        .bearer_auth("tok-123")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(registry["clients"][0]["keyVersions"], json!([2]));
    assert_eq!(registry["routes"][0]["wallet"], "mywallet");

    // A user at the wallet, a device, a code, a payment signed with key version 2.
    let created: Value = http
        .post(format!("{wallet}/admin/v1/users"))
        .bearer_auth("tok-123")
        .json(
            &json!({"name": "zoe", "password": "pw-1234", "balanceMinor": 10_000,
            "passwordFreePerPaymentMinor": 5_000, "passwordFreeDailyMinor": 10_000,
            "hardLimitPerPaymentMinor": 10_000, "hardLimitDailyMinor": 10_000}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["result"]["resultStatus"], "S", "{created}");
    let (code, _) = common::fresh_code(&wallet, "zoe", "pw-1234").await;
    let client = SignedClient::new(
        "ACME",
        Signer::new(
            PrivateKey::parse(&merchant_key.to_pkcs8_base64()).unwrap(),
            2,
        ),
        Some(acq_key.public_key()),
        Duration::from_secs(20),
    );
    let paid: Value = client
        .post(&format!("{acquirer}/ams/api/v1/payments/pay"), &json!({
            "productCode": "IN_STORE_PAYMENT", "paymentRequestId": "acme-1",
            "paymentAmount": {"currency": "SGD", "value": "1999"},
            "paymentMethod": {"paymentMethodType": "CONNECT_WALLET", "paymentMethodId": code},
            "order": {"orderDescription": "groceries", "merchant": {"referenceMerchantId": "ACME-1",
                "store": {"referenceStoreId": "ST-1"}}}
        }))
        .await
        .unwrap();
    assert_eq!(paid["result"]["resultCode"], "SUCCESS", "{paid}");
    assert_eq!(paid["pspCustomerInfo"]["pspName"], "mywallet");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn an_invalid_request_time_window_or_guessing_limit_stops_serve_at_start() {
    let window = "PAYCODE_REQUEST_TIME_WINDOW_S";
    let terminal = "PAYCODE_GUESS_PER_TERMINAL";
    for (var, value, expect) in [
        (window, "0", "request_time_window_s is 0"),
        (window, "86401", "request_time_window_s is 86401"),
        (
            window,
            "five",
            "PAYCODE_REQUEST_TIME_WINDOW_S=\"five\" is not a valid number",
        ),
        (
            terminal,
            "0/600",
            "guess_per_terminal: failures_max and window_s must both be positive",
        ),
        (
            terminal,
            "20",
            "PAYCODE_GUESS_PER_TERMINAL=\"20\" must be FAILURES/WINDOW_S",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_paycode"))
            .args(["--data-dir", dir.path().to_str().unwrap(), "serve"])
            .args(["--listen", "127.0.0.1:0", "--wallet-port-base", "0"])
            .env("PAYCODE_LOG", "warn")
            .env(var, value)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A serve that starts after all would run forever: stop it and fail.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("{var}={value}: serve started with an invalid limit");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success(), "{var}={value}: serve must not start");
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(stderr.contains(expect), "{var}={value}: {stderr}");
    }
}

/// Writes an acquirer-only configuration with `http_section` appended; returns its path.
fn acquirer_only_config(dir: &std::path::Path, http_section: &str) -> std::path::PathBuf {
    let key = PrivateKey::generate().unwrap();
    std::fs::write(dir.join("acquirer.key"), key.to_pkcs8_base64()).unwrap();
    let path = dir.join("paycode.toml");
    std::fs::write(
        &path,
        format!(
            "[acquirer]\nlisten = \"127.0.0.1:0\"\ndb = \"acquirer.db\"\nprivate_key_file = \"acquirer.key\"\n{http_section}"
        ),
    )
    .unwrap();
    path
}

fn serve_config(path: &std::path::Path, envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paycode"));
    cmd.args(["serve", "--config"])
        .arg(path)
        .env("PAYCODE_LOG", "warn")
        .envs(envs.iter().copied());
    cmd
}

#[test]
fn invalid_connection_bounds_stop_serve_at_start_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[http]\nheader_max_bytes = 100\n",
            vec![],
            "header_max_bytes",
        ),
        (
            "[http]\nheader_max_bytes = 32768\nheader_hard_max_bytes = 16384\n",
            vec![],
            "header_hard_max_bytes",
        ),
        ("[http]\nidle_timeout_s = 5\n", vec![], "idle_timeout_s"),
        (
            "",
            vec![("PAYCODE_HTTP_CONNECTIONS_MAX", "0")],
            "connections_max",
        ),
        (
            "",
            vec![("PAYCODE_HTTP_HEADER_READ_TIMEOUT_MS", "soon")],
            "soon",
        ),
    ];
    for (section, envs, named) in cases {
        let path = acquirer_only_config(dir.path(), section);
        let out = serve_config(&path, &envs)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{section} {envs:?} was accepted");
        assert!(stderr.contains(named), "{section} {envs:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_comes_from_the_file_and_the_environment_overrides_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let path = acquirer_only_config(dir.path(), "[http]\nconnections_max = 1\n");
    let mut child = serve_config(&path, &[("PAYCODE_HTTP_CONNECTIONS_MAX", "2")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            addr = url.trim_start_matches("http://").to_string();
        } else if line.starts_with("paycode is running") {
            break;
        }
    }
    assert!(!addr.is_empty());
    /// One keep-alive `/healthz` on `s`; true if an answer came.
    async fn healthz(s: &mut tokio::net::TcpStream) -> bool {
        if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .is_err()
        {
            return false;
        }
        // The whole answer, so that the next one on this connection starts clean.
        let mut answer = Vec::new();
        let mut chunk = [0u8; 512];
        while !(answer.ends_with(b"\r\n\r\nok")) {
            match tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&chunk[..n]),
                _ => return false,
            }
        }
        answer.starts_with(b"HTTP/1.1 200")
    }
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        assert!(
            healthz(&mut s).await,
            "a connection under the cap was refused"
        );
        held.push(s);
    }
    let mut third = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert!(
        !healthz(&mut third).await,
        "the third connection was served"
    );
    for s in &mut held {
        assert!(healthz(s).await);
    }
    let _ = child.kill();
    let _ = child.wait();
}
