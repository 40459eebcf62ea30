//! The tools a person uses (`paycode wallet …`, `paycode pos …`, `paycode demo`), run as the
//! binary against a live `paycode serve` on free ports, and their one-line errors.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

mod common;

use common::*;

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn balance_line(serve: &Serve, user: &str) -> String {
    let out = serve
        .cmd()
        .args(["wallet", "balance", "--user", user])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "wallet balance failed: {}",
        stderr_of(&out)
    );
    stdout_of(&out)
}

/// An inquiry schedule of `n` waits of `ms`, as the hidden flag takes it.
fn schedule(n: usize, ms: u64) -> String {
    vec![ms.to_string(); n].join(",")
}

#[test]
fn scanned_png_code_is_paid_and_codes_work_with_the_wallet_down() {
    let mut serve = Serve::start();
    let (user, _) = serve.user("everyday");
    let png = serve.data_dir().join("code.png");
    serve
        .cmd()
        .args(["wallet", "code", "--user", &user, "--png"])
        .arg(&png)
        .assert()
        .success();
    let out = serve
        .cmd()
        .args(["pos", "charge", "12.50", &serve.currency(), "--scan"])
        .arg(&png)
        .output()
        .unwrap();
    let text = stdout_of(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr_of(&out));
    assert!(text.contains("PAID"), "{text}");
    assert!(
        text.contains(&format!("{} 12.50", serve.currency())),
        "{text}"
    );
    assert!(
        text.contains(serve.demo["merchantName"].as_str().unwrap()),
        "{text}"
    );
    assert!(text.contains("Payment id"), "{text}");

    // The phone registered on first use; with every service down it still makes codes.
    serve.stop();
    let out = paycode(serve.data_dir())
        .args(["wallet", "code", "--user", &user, "--digits"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out).trim().len(), 24);
}

#[test]
fn password_payment_is_confirmed_on_the_phone_while_the_pos_polls() {
    let serve = Serve::start();
    let (user, password) = serve.user("password");
    let digits = serve.code_digits(&user);
    let mut pos = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(serve.data_dir())
        .args([
            "pos",
            "charge",
            "20.00",
            &serve.currency(),
            "--code",
            &digits,
        ])
        .args(["--inquiry-schedule-ms", &schedule(100, 200)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let confirm = serve
        .cmd()
        .args(["wallet", "confirm", "--user", &user, "--password-stdin"])
        .write_stdin(format!("{password}\n"))
        .output()
        .unwrap();
    assert!(confirm.status.success(), "{}", stderr_of(&confirm));
    assert!(
        stdout_of(&confirm).contains("Paid"),
        "{}",
        stdout_of(&confirm)
    );
    assert!(
        stderr_of(&confirm).contains("over the password-free limit"),
        "{}",
        stderr_of(&confirm)
    );

    let status = pos.wait().unwrap();
    let mut text = String::new();
    pos.stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let mut progress = String::new();
    pos.stderr
        .take()
        .unwrap()
        .read_to_string(&mut progress)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{text}\n{progress}");
    assert!(text.contains("PAID"), "{text}");
    assert!(progress.contains("waiting for the customer"), "{progress}");
}

#[test]
fn unconfirmed_payment_is_cancelled_by_the_pos_after_the_inquiry_schedule() {
    let serve = Serve::start();
    let (user, _) = serve.user("password");
    let before = balance_line(&serve, &user);
    let digits = serve.code_digits(&user);
    let out = serve
        .cmd()
        .args([
            "pos",
            "charge",
            "20.00",
            &serve.currency(),
            "--code",
            &digits,
        ])
        .args(["--request-id", "TEST-NEVER-CONFIRMED"])
        .args(["--inquiry-schedule-ms", &schedule(4, 100)])
        .args(["--cancel-retry-ms", &schedule(2, 100)])
        .output()
        .unwrap();
    let text = stdout_of(&out);
    let progress = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{text}\n{progress}");
    assert!(text.contains("CANCELLED"), "{text}");
    assert!(progress.contains("inquiry 4/4"), "{progress}");
    assert!(progress.contains("cancelling"), "{progress}");

    let status = serve
        .cmd()
        .args(["pos", "status", "--request-id", "TEST-NEVER-CONFIRMED"])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(2), "{}", stderr_of(&status));
    assert!(
        stdout_of(&status).contains("CANCELLED"),
        "{}",
        stdout_of(&status)
    );
    // Nothing was charged, and the phone no longer offers the checkout.
    assert_eq!(balance_line(&serve, &user), before);
    let confirm = serve
        .cmd()
        .args([
            "wallet",
            "confirm",
            "--user",
            &user,
            "--password-stdin",
            "--wait-s",
            "0",
        ])
        .write_stdin("x\n")
        .output()
        .unwrap();
    assert_eq!(confirm.status.code(), Some(2), "{}", stderr_of(&confirm));
}

#[test]
fn partial_refund_and_status_of_a_paid_payment() {
    let serve = Serve::start();
    let (user, _) = serve.user("everyday");
    let digits = serve.code_digits(&user);
    let cur = serve.currency();
    serve
        .cmd()
        .args([
            "pos",
            "charge",
            "12.50",
            &cur,
            "--code",
            &digits,
            "--request-id",
            "TEST-REFUND-1",
        ])
        .assert()
        .code(0);
    let status = serve
        .cmd()
        .args(["pos", "status", "--request-id", "TEST-REFUND-1"])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "{}", stderr_of(&status));
    let text = stdout_of(&status);
    let payment_id = text
        .lines()
        .find_map(|l| l.strip_prefix("Payment id"))
        .map(|s| s.trim().to_string())
        .unwrap();
    let refund = serve
        .cmd()
        .args(["pos", "refund", "5.00", &cur, "--payment-id", &payment_id])
        .output()
        .unwrap();
    assert_eq!(refund.status.code(), Some(0), "{}", stderr_of(&refund));
    assert!(
        stdout_of(&refund).contains("REFUNDED"),
        "{}",
        stdout_of(&refund)
    );
    // More than what is left is refused, with exit code 2.
    let over = serve
        .cmd()
        .args(["pos", "refund", "10.00", &cur, "--payment-id", &payment_id])
        .output()
        .unwrap();
    assert_eq!(over.status.code(), Some(2), "{}", stderr_of(&over));
    let status = serve
        .cmd()
        .args(["pos", "status", "--payment-id", &payment_id])
        .output()
        .unwrap();
    assert!(
        stdout_of(&status).contains("REFUND"),
        "{}",
        stdout_of(&status)
    );
}

#[test]
fn demo_runs_the_whole_story_to_the_end() {
    let serve = Serve::start();
    let out = serve
        .cmd()
        .args(["demo", "--inquiry-schedule-ms", &schedule(50, 200)])
        .output()
        .unwrap();
    let text = stdout_of(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr_of(&out));
    for part in [
        "1. A password-free payment",
        "2. A visitor pays from a wallet in another currency",
        "3. A payment that needs the password",
        "the cashier scans it (wallet: sgpay)",
        "the cashier scans it (wallet: cnpay)",
        "Rate",
        "USER_BALANCE_NOT_ENOUGH",
        "the payment is now CANCELLED",
        "REFUNDED",
        "signature verified",
        "The whole story ran as expected",
    ] {
        assert!(text.contains(part), "missing {part:?}:\n{text}");
    }
}

/// Reads the QR code drawn by `wallet code` back into modules (two per character cell).
fn qr_rows(screen: &str) -> Vec<Vec<bool>> {
    let mut rows = Vec::new();
    let mut started = false;
    for line in screen.lines() {
        let is_qr_line = line.chars().all(|c| matches!(c, ' ' | '█' | '▀' | '▄'))
            && line.chars().any(|c| c != ' ');
        let is_blank_qr_margin = !line.is_empty() && line.chars().all(|c| c == ' ');
        if is_qr_line || (is_blank_qr_margin && !started) {
            started |= is_qr_line;
            let (mut top, mut bottom) = (Vec::new(), Vec::new());
            for c in line.chars() {
                top.push(matches!(c, '█' | '▀'));
                bottom.push(matches!(c, '█' | '▄'));
            }
            rows.push(top);
            rows.push(bottom);
        } else if started {
            break;
        }
    }
    rows
}

fn decode(rows: &[Vec<bool>]) -> Option<String> {
    let module_px = 6u32;
    let quiet = 4u32;
    let w = rows.iter().map(Vec::len).max().unwrap() as u32;
    let h = rows.len() as u32;
    let mut img = image::GrayImage::from_pixel(
        (w + 2 * quiet) * module_px,
        (h + 2 * quiet) * module_px,
        image::Luma([255]),
    );
    for (y, row) in rows.iter().enumerate() {
        for (x, &dark) in row.iter().enumerate() {
            if dark {
                for dy in 0..module_px {
                    for dx in 0..module_px {
                        img.put_pixel(
                            (x as u32 + quiet) * module_px + dx,
                            (y as u32 + quiet) * module_px + dy,
                            image::Luma([0]),
                        );
                    }
                }
            }
        }
    }
    rxing::helpers::detect_in_image(
        image::DynamicImage::ImageLuma8(img),
        Some(rxing::BarcodeFormat::QR_CODE),
    )
    .ok()
    .map(|r| r.getText().to_string())
}

#[test]
fn terminal_qr_of_wallet_code_decodes_to_the_digits_under_it() {
    let serve = Serve::start();
    let (user, _) = serve.user("everyday");
    let out = serve
        .cmd()
        .args(["wallet", "code", "--user", &user, "--once", "--no-color"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let screen = stdout_of(&out);
    let shown: String = screen
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 29 && l.split(' ').count() == 6 && l.split(' ').all(|g| g.len() == 4))
        .unwrap_or_else(|| panic!("no digits line in\n{screen}"))
        .replace(' ', "");
    assert!(screen.contains("valid for"), "{screen}");
    let rows = qr_rows(&screen);
    assert_eq!(decode(&rows).as_deref(), Some(shown.as_str()), "{screen}");
}

/// A `demo.json` whose acquirer and wallet listen nowhere.
fn unreachable_demo_dir() -> (tempfile::TempDir, PathBuf) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let key = paycode_sign::PrivateKey::generate().unwrap();
    let demo = serde_json::json!({
        "acquirerUrl": url,
        "clientId": "TEST",
        "merchantPrivateKey": key.to_pkcs8_base64(),
        "acquirerPublicKey": key.public_key().to_base64(),
        "referenceMerchantId": "M1",
        "merchantName": "Test Shop",
        "referenceStoreId": "S1",
        "storeName": "Main",
        "merchantMcc": "5812",
        "currency": "SGD",
        "wallets": [{"name": "sgpay", "url": url, "cii": "281005", "currency": "SGD"}],
        "users": [{"name": "alice", "wallet": "sgpay", "currency": "SGD", "password": "123456", "role": "everyday"}],
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("demo.json"), demo.to_string()).unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

/// Runs a command expected to fail with exit code 1 and one clear line on stderr.
fn check_error(data_dir: &Path, args: &[&str], expect: &[&str]) {
    let out = paycode(data_dir).args(args).output().unwrap();
    let err = stderr_of(&out);
    let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(error_lines.len(), 1, "{args:?}: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    for part in expect {
        assert!(
            error_lines[0].contains(part),
            "{args:?}: missing {part:?} in {err}"
        );
    }
}

#[test]
fn errors_are_one_line_saying_what_why_and_what_to_do() {
    let empty = tempfile::tempdir().unwrap();
    let code = "281005021234567812345678";
    check_error(
        empty.path(),
        &["pos", "charge", "1.00", "SGD", "--code", code],
        &["demo.json", "start `paycode serve` first"],
    );
    let (_keep, dir) = unreachable_demo_dir();
    check_error(
        &dir,
        &["pos", "charge", "12.505", "SGD", "--code", code],
        &["12.505 SGD", "SGD has 2 decimals at most"],
    );
    check_error(
        &dir,
        &["pos", "charge", "1000.5", "JPY", "--code", code],
        &["JPY has no decimals"],
    );
    check_error(
        &dir,
        &["pos", "charge", "12.50", "SGD", "--code", "12345"],
        &["does not hold a payment code"],
    );
    check_error(
        &dir,
        &[
            "pos",
            "charge",
            "12.50",
            "SGD",
            "--scan",
            "/nonexistent/code.png",
        ],
        &["cannot open the image"],
    );
    check_error(
        &dir,
        &["pos", "charge", "12.50", "SGD", "--code", code],
        &[
            "nothing was charged",
            "cannot reach the acquirer",
            "is `paycode serve` running",
        ],
    );
    // The failed wallet look-up did not stop the charge: the error is the pay request's.
    let out = paycode(&dir)
        .args(["pos", "charge", "12.50", "SGD", "--code", code])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    let named = err
        .find("wallet: unknown")
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        named < err.find("error: the charge was not sent").unwrap(),
        "{err}"
    );
    check_error(
        &dir,
        &["wallet", "code", "--user", "alice"],
        &["cannot register", "cannot reach wallet sgpay"],
    );
    check_error(
        &dir,
        &["wallet", "code", "--user", "zed"],
        &["no user \"zed\""],
    );
}

#[test]
fn cancel_of_a_paid_payment_reverses_it_in_full() {
    let serve = Serve::start();
    let (user, _) = serve.user("everyday");
    let before = balance_line(&serve, &user);
    let digits = serve.code_digits(&user);
    let cur = serve.currency();
    serve
        .cmd()
        .args([
            "pos",
            "charge",
            "8.00",
            &cur,
            "--code",
            &digits,
            "--request-id",
            "TEST-CANCEL-PAID",
        ])
        .assert()
        .code(0);
    assert_ne!(balance_line(&serve, &user), before);
    let out = serve
        .cmd()
        .args(["pos", "cancel", "--request-id", "TEST-CANCEL-PAID"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains("CANCELLED"), "{}", stdout_of(&out));
    assert_eq!(balance_line(&serve, &user), before);
    let status = serve
        .cmd()
        .args(["pos", "status", "--request-id", "TEST-CANCEL-PAID"])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(2), "{}", stderr_of(&status));
    assert!(
        stdout_of(&status).contains("CANCELLED"),
        "{}",
        stdout_of(&status)
    );
    // An unknown payment is one clear line, exit 1.
    check_error(
        serve.data_dir(),
        &["pos", "cancel", "--request-id", "NO-SUCH-PAYMENT"],
        &["no such payment"],
    );
}

#[test]
fn declined_checkout_fails_the_charge_and_history_lists_the_payments() {
    let serve = Serve::start();
    let (user, _) = serve.user("password");
    let digits = serve.code_digits(&user);
    let mut pos = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(serve.data_dir())
        .args([
            "pos",
            "charge",
            "20.00",
            &serve.currency(),
            "--code",
            &digits,
        ])
        .args(["--inquiry-schedule-ms", &schedule(100, 200)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let decline = serve
        .cmd()
        .args(["wallet", "decline", "--user", &user])
        .output()
        .unwrap();
    assert!(decline.status.success(), "{}", stderr_of(&decline));
    assert!(
        stdout_of(&decline).contains("Declined"),
        "{}",
        stdout_of(&decline)
    );
    let status = pos.wait().unwrap();
    let mut text = String::new();
    pos.stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(text.contains("FAILED"), "{text}");

    let history = serve
        .cmd()
        .args(["wallet", "history", "--user", &user])
        .output()
        .unwrap();
    assert!(history.status.success(), "{}", stderr_of(&history));
    let text = stdout_of(&history);
    assert!(text.contains("PAYMENT"), "{text}");
    assert!(
        text.contains(serve.demo["merchantName"].as_str().unwrap()),
        "{text}"
    );
}

/// The demo wallet that issues `user`'s codes.
fn wallet_of(serve: &Serve, user: &str) -> String {
    serve.demo["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == user)
        .and_then(|u| u["wallet"].as_str())
        .unwrap()
        .to_string()
}

#[test]
fn pos_names_the_wallet_before_paying_and_masks_the_code() {
    let serve = Serve::start();
    let (user, _) = serve.user("everyday");
    let before = balance_line(&serve, &user);
    let digits = serve.code_digits(&user);
    let out = serve
        .cmd()
        .args([
            "pos",
            "charge",
            "3.20",
            &serve.currency(),
            "--code",
            &digits,
        ])
        .output()
        .unwrap();
    let (text, progress) = (stdout_of(&out), stderr_of(&out));
    assert_eq!(out.status.code(), Some(0), "{text}\n{progress}");
    assert!(text.contains("PAID"), "{text}");
    let wallet = wallet_of(&serve, &user);
    let named = progress
        .find(&format!("wallet: {wallet}"))
        .unwrap_or_else(|| panic!("no wallet line in\n{progress}"));
    let charging = progress.find("charging").unwrap();
    assert!(
        named < charging,
        "the wallet is named before paying:\n{progress}"
    );
    // The receipt's wallet is the one named before paying.
    let receipt_wallet = text
        .lines()
        .find_map(|l| l.strip_prefix("Wallet "))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no wallet on the receipt\n{text}"));
    assert_eq!(receipt_wallet, wallet, "{text}");
    assert_ne!(balance_line(&serve, &user), before);
    // Nothing printed shows more of the code than its last four digits.
    for shown in [&text, &progress] {
        assert!(!shown.contains(&digits[..20]), "{shown}");
    }
}

#[test]
fn a_code_no_wallet_issues_is_refused_before_pay() {
    let serve = Serve::start();
    let ciis: Vec<&str> = serve.demo["wallets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["cii"].as_str())
        .collect();
    assert!(!ciis.is_empty() && !ciis.contains(&"289990"), "{ciis:?}");
    let code = "289990021234567812345678";
    let out = serve
        .cmd()
        .args(["pos", "charge", "5.00", &serve.currency(), "--code", code])
        .args(["--request-id", "TEST-UNKNOWN-ISSUER"])
        .output()
        .unwrap();
    let (text, progress) = (stdout_of(&out), stderr_of(&out));
    assert_eq!(out.status.code(), Some(2), "{text}\n{progress}");
    assert_eq!(text, "", "no receipt for a charge never sent");
    let lines: Vec<&str> = progress
        .lines()
        .filter(|l| !l.starts_with("identifying"))
        .collect();
    assert_eq!(lines.len(), 1, "one line explains it:\n{progress}");
    for part in [
        "not charged",
        "INVALID_CODE",
        "unknown issuer",
        "another wallet",
    ] {
        assert!(lines[0].contains(part), "missing {part:?} in {progress}");
    }
    assert!(!progress.contains("charging"), "{progress}");
    assert!(
        !progress.contains(&code[..20]),
        "the code is masked: {progress}"
    );
    // The acquirer never saw a pay request for it.
    check_error(
        serve.data_dir(),
        &["pos", "status", "--request-id", "TEST-UNKNOWN-ISSUER"],
        &["no such payment"],
    );
}

/// A TCP proxy to an HTTP server that hangs up, unanswered, on every request whose request
/// line contains `cut` (a network failure for that call only), and passes everything else.
struct CuttingProxy {
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl CuttingProxy {
    fn start(upstream_url: &str, cut: &'static str) -> CuttingProxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream_url.trim_start_matches("http://").to_string();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let upstream = upstream.clone();
                std::thread::spawn(move || {
                    let _ = CuttingProxy::relay(client, &upstream, cut);
                });
            }
        });
        CuttingProxy { url, stop }
    }

    fn relay(mut client: std::net::TcpStream, upstream: &str, cut: &str) -> std::io::Result<()> {
        use std::io::Write;
        const HEAD_MAX_BYTES: usize = 64 * 1024;
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < HEAD_MAX_BYTES {
            let n = client.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
        }
        let request_line = String::from_utf8_lossy(&head)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        if request_line.contains(cut) {
            // Dropping the connection unanswered.
            return Ok(());
        }
        let mut server = std::net::TcpStream::connect(upstream)?;
        server.write_all(&head)?;
        let (mut to_client, mut from_server) = (client.try_clone()?, server.try_clone()?);
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from_server, &mut to_client);
            let _ = to_client.shutdown(std::net::Shutdown::Write);
        });
        std::io::copy(&mut client, &mut server)?;
        server.shutdown(std::net::Shutdown::Write)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = std::net::TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

#[test]
fn pos_charges_anyway_when_the_wallet_look_up_gets_no_answer() {
    let serve = Serve::start();
    let (user, _) = serve.user("everyday");
    let before = balance_line(&serve, &user);
    let digits = serve.code_digits(&user);
    // The same merchant, reaching the acquirer through a link that loses the look-up.
    let proxy = CuttingProxy::start(
        serve.demo["acquirerUrl"].as_str().unwrap(),
        "inquiryCodeIssuer",
    );
    let pos_dir = tempfile::tempdir().unwrap();
    let mut demo = serve.demo.clone();
    demo["acquirerUrl"] = serde_json::json!(proxy.url);
    std::fs::write(pos_dir.path().join("demo.json"), demo.to_string()).unwrap();
    let out = paycode(pos_dir.path())
        .args([
            "pos",
            "charge",
            "4.10",
            &serve.currency(),
            "--code",
            &digits,
        ])
        .args(["--request-id", "TEST-LOOKUP-LOST"])
        .output()
        .unwrap();
    let (text, progress) = (stdout_of(&out), stderr_of(&out));
    assert_eq!(out.status.code(), Some(0), "{text}\n{progress}");
    assert!(text.contains("PAID"), "{text}");
    assert!(progress.contains("wallet: unknown"), "{progress}");
    assert!(progress.contains("charging anyway"), "{progress}");
    assert!(!progress.contains(&digits[..20]), "{progress}");
    assert_ne!(balance_line(&serve, &user), before);
    // The acquirer has the payment, paid.
    let status = serve
        .cmd()
        .args(["pos", "status", "--request-id", "TEST-LOOKUP-LOST"])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "{}", stderr_of(&status));
    assert!(
        stdout_of(&status).contains("SUCCESS"),
        "{}",
        stdout_of(&status)
    );
}

/// Disables a demo wallet through the acquirer's admin API, as an operator would.
fn disable_wallet(serve: &Serve, name: &str) {
    let key_path = serve
        .data_dir()
        .join("keys")
        .join(format!("wallet-{name}.key"));
    let key = paycode_sign::PrivateKey::parse(&std::fs::read_to_string(key_path).unwrap()).unwrap();
    let base = serve.demo["acquirerUrl"].as_str().unwrap().to_string();
    let token = serve.admin_token();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let registry: serde_json::Value = http
            .get(format!("{base}/admin/v1/registry"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let w = registry["wallets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == name)
            .unwrap()
            .clone();
        let r = http
            .post(format!("{base}/admin/v1/wallets"))
            .bearer_auth(&token)
            .json(&serde_json::json!({
                "name": name, "pspName": w["pspName"], "baseUrl": w["baseUrl"],
                "publicKey": key.public_key().to_base64(), "currencies": w["currencies"],
                "enabled": false,
            }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
    });
}

#[test]
fn a_retried_charge_follows_the_first_attempt_even_after_its_wallet_is_disabled() {
    let serve = Serve::start();
    let (user, _) = serve.user("everyday");
    let wallet = wallet_of(&serve, &user);
    let cur = serve.currency();
    let charge = |code: &str, request_id: &str| {
        serve
            .cmd()
            .args(["pos", "charge", "2.40", &cur, "--code", code])
            .args(["--request-id", request_id])
            .output()
            .unwrap()
    };
    let digits = serve.code_digits(&user);
    let first = charge(&digits, "TEST-RETRY-1");
    assert_eq!(first.status.code(), Some(0), "{}", stderr_of(&first));
    let after_first = balance_line(&serve, &user);
    disable_wallet(&serve, &wallet);

    // The look-up now refuses the code, but this request id was paid: the retry is told so.
    let again = charge(&digits, "TEST-RETRY-1");
    let (text, progress) = (stdout_of(&again), stderr_of(&again));
    assert_eq!(again.status.code(), Some(0), "{text}\n{progress}");
    assert!(text.contains("PAID"), "{text}");
    assert!(progress.contains("was sent before"), "{progress}");
    assert_eq!(balance_line(&serve, &user), after_first, "charged once");

    // A new charge from the disabled wallet is turned away before pay.
    let digits = serve.code_digits(&user);
    let refused = charge(&digits, "TEST-RETRY-2");
    let progress = stderr_of(&refused);
    assert_eq!(refused.status.code(), Some(2), "{progress}");
    assert_eq!(stdout_of(&refused), "");
    assert!(progress.contains("not accepting payments"), "{progress}");
    assert_eq!(balance_line(&serve, &user), after_first);
    check_error(
        serve.data_dir(),
        &["pos", "status", "--request-id", "TEST-RETRY-2"],
        &["no such payment"],
    );
}

/// `paycode admin risk`: a rules file with a mistake is refused naming the rule and field and
/// nothing changes; a good one is put in force with a new version; a dry run prints per rule.
#[test]
fn admin_risk_sets_rules_from_a_file_refuses_mistakes_and_dry_runs() {
    let serve = Serve::start();
    let (user, _) = serve.user("everyday");
    let digits = serve.code_digits(&user);
    serve
        .cmd()
        .args([
            "pos",
            "charge",
            "12.50",
            &serve.currency(),
            "--code",
            &digits,
        ])
        .assert()
        .code(0);
    let dir = serve.data_dir();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nid = \"a\"\nkind = \"CODE_REPLAY\"\n\n[[rule]]\nid = \"burst\"\nkind = \"CUSTOMER_VELOCITY\"\nmax = 3\n",
    )
    .unwrap();
    let out = serve
        .cmd()
        .args(["admin", "risk", "set"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(err.contains(r#"rules[1] ("burst").windowMinutes"#), "{err}");
    let get = serve.cmd().args(["admin", "risk", "get"]).output().unwrap();
    let before = stdout_of(&get);
    assert!(before.starts_with("rule set version 1"), "{before}");

    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[[rule]]\nid = \"ceiling\"\nkind = \"MAX_AMOUNT\"\ncurrency = \"SGD\"\nmaxMinor = 1000\n\n\
         [[rule]]\nid = \"burst\"\nkind = \"CUSTOMER_VELOCITY\"\nwindowMinutes = 10\nmax = 3\nmode = \"SHADOW\"\n",
    )
    .unwrap();
    let tried = serve
        .cmd()
        .args(["admin", "risk", "try", "--since", "1h"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(tried.status.success(), "{}", stderr_of(&tried));
    let report = stdout_of(&tried);
    assert!(report.starts_with("1 payments: would allow"), "{report}");
    assert!(report.contains("ceiling"), "{report}");
    let set = serve
        .cmd()
        .args(["admin", "risk", "set"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(set.status.success(), "{}", stderr_of(&set));
    assert!(stdout_of(&set).contains("version 2"), "{}", stdout_of(&set));
}

/// `serve --risk-rules FILE` puts the file's rules in force at start; a file with a mistake
/// stops the start with one line naming the rule and field.
#[test]
fn serve_loads_a_rules_file_at_start_and_refuses_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"[{"id": "late", "kind": "OPENING_HOURS", "open": "25:00", "close": "06:00"}]"#,
    )
    .unwrap();
    let out = paycode(dir.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--wallet-port-base",
            "0",
        ])
        .arg("--risk-rules")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(err.contains(r#"rules[0] ("late").open"#), "{err}");

    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[rule]]\nid = \"night\"\nkind = \"OPENING_HOURS\"\nopen = \"06:00\"\nclose = \"05:59\"\n",
    )
    .unwrap();
    let serve = Serve::start_in(
        dir.path(),
        &[("PAYCODE_RISK_RULES", good.to_str().unwrap())],
    );
    let get = serve
        .cmd()
        .args(["admin", "risk", "get", "--json"])
        .output()
        .unwrap();
    let text = stdout_of(&get);
    assert!(text.contains("\"night\""), "{text}{}", stderr_of(&get));
}

/// `paycode admin` over the registry: a client is added, suspended (its requests refused) and
/// activated again; a key version is added; an agent token is issued, listed without its secret
/// and revoked; mistakes are one line naming what is wrong.
#[test]
fn admin_manages_clients_keys_and_agent_tokens_from_the_command_line() {
    let serve = Serve::start();
    let admin = |args: &[&str]| serve.cmd().arg("admin").args(args).output().unwrap();
    let ok = |args: &[&str]| {
        let out = admin(args);
        assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
        stdout_of(&out)
    };
    assert_eq!(
        ok(&["clients", "add", "ISV_1", "--name", "Integrator One"]).trim(),
        "OK"
    );
    let reg = ok(&["registry"]);
    assert!(reg.contains("\"ISV_1\""), "{reg}");
    ok(&["clients", "suspend", "ISV_1"]);
    let reg: serde_json::Value = serde_json::from_str(&ok(&["registry"])).unwrap();
    let isv = reg["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clientId"] == "ISV_1")
        .unwrap()
        .clone();
    assert_eq!(isv["active"], false, "{isv}");
    assert_eq!(isv["name"], "Integrator One", "suspending keeps the name");
    ok(&["clients", "activate", "ISV_1"]);
    let key = serve.data_dir().join("isv.pub");
    let demo: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(serve.data_dir().join("demo.json")).unwrap())
            .unwrap();
    std::fs::write(&key, demo["acquirerPublicKey"].as_str().unwrap()).unwrap();
    ok(&[
        "keys",
        "add",
        "ISV_1",
        "--version",
        "1",
        "--public-key",
        key.to_str().unwrap(),
    ]);
    let reg: serde_json::Value = serde_json::from_str(&ok(&["registry"])).unwrap();
    let versions = reg["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clientId"] == "ISV_1")
        .unwrap()["keyVersions"]
        .clone();
    assert_eq!(versions, serde_json::json!([1]), "{reg}");

    let client = demo["clientId"].as_str().unwrap();
    let merchant = demo["referenceMerchantId"].as_str().unwrap();
    let issued = ok(&[
        "agent-tokens",
        "issue",
        "--integrator",
        "ISV_1",
        "--client",
        client,
        "--merchant",
        merchant,
        "--scope",
        "pay,inquiryPayment",
    ]);
    let token = issued
        .lines()
        .find_map(|l| l.strip_prefix("Agent-Token: "))
        .unwrap_or_else(|| panic!("{issued}"))
        .to_string();
    let listed = ok(&["agent-tokens", "list"]);
    assert!(
        listed.contains("ISV_1") && !listed.contains(&token),
        "{listed}"
    );
    let id = issued.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(ok(&["agent-tokens", "revoke", &id]).trim(), "OK");

    // A store is added to a merchant without restating the merchant, and listed.
    ok(&[
        "stores",
        "add",
        client,
        merchant,
        "S-ORCHARD",
        "--name",
        "Kopi Orchard",
        "--mcc",
        "5812",
    ]);
    let stores = ok(&["stores", "list", client, merchant]);
    assert!(
        stores.contains("S-ORCHARD") && stores.contains("5812  Kopi Orchard"),
        "{stores}"
    );
    assert!(
        stores.contains(demo["referenceStoreId"].as_str().unwrap()),
        "the others stay: {stores}"
    );
    let out = admin(&[
        "stores", "add", client, merchant, "S-X", "--name", "X", "--mcc", "58",
    ]);
    assert!(stderr_of(&out).contains("mcc"), "{}", stderr_of(&out));
    let out = admin(&[
        "stores", "add", client, "NOBODY", "S-X", "--name", "X", "--mcc", "5812",
    ]);
    assert!(
        stderr_of(&out).contains("no merchant NOBODY"),
        "{}",
        stderr_of(&out)
    );

    // Every change is in the operator log, with who made it.
    let log = ok(&["--as", "alice-ops", "log", "--limit", "20"]);
    let log_json: serde_json::Value = serde_json::from_str(&ok(&["log", "--json"])).unwrap();
    let actions: Vec<&str> = log_json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "client.put",
        "key.put",
        "agent-token.issue",
        "agent-token.revoke",
        "store.put",
    ] {
        assert!(actions.contains(&a), "{a} missing from {log}");
    }
    ok(&["--as", "alice-ops", "clients", "suspend", "ISV_1"]);
    let newest = ok(&["log", "--limit", "1"]);
    assert!(
        newest.contains("alice-ops") && newest.contains("client.put") && newest.contains("ISV_1"),
        "{newest}"
    );

    // Mistakes: one line, saying what is wrong.
    let out = admin(&["clients", "suspend", "NOBODY"]);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("no client NOBODY is registered"),
        "{}",
        stderr_of(&out)
    );
    let out = admin(&["agent-tokens", "revoke", &id]);
    assert!(
        stderr_of(&out).contains("no unrevoked agent token"),
        "{}",
        stderr_of(&out)
    );
    let out = admin(&[
        "agent-tokens",
        "issue",
        "--integrator",
        "ISV_1",
        "--client",
        client,
        "--merchant",
        "NOPE",
        "--scope",
        "pay",
    ]);
    assert!(
        stderr_of(&out).contains("referenceMerchantId: no merchant NOPE"),
        "{}",
        stderr_of(&out)
    );
}

/// Signs in to the dashboard of `base` over HTTP; the status of the sign-in answer and, when
/// it let the user in, the first page behind it.
fn dashboard_sign_in(base: &str, name: &str, password: &str) -> (u16, Option<String>) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let form = http
            .get(format!("{base}/dashboard/sign-in"))
            .send()
            .await
            .unwrap();
        let pre = form.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let html = form.text().await.unwrap();
        let at = html.find("name=\"csrf\" value=\"").unwrap() + 19;
        let csrf = &html[at..at + html[at..].find('"').unwrap()];
        let body = format!("csrf={csrf}&name={name}&password={password}");
        let r = http
            .post(format!("{base}/dashboard/sign-in"))
            .header("cookie", pre)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let Some(session) = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|v| v.starts_with("paycode_session="))
        else {
            return (status, None);
        };
        let page = http
            .get(format!("{base}/dashboard/payments"))
            .header("cookie", session.split(';').next().unwrap())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        (status, Some(page))
    })
}

/// The demo's merchant user signs in with the password `demo.json` gives; `paycode admin users`
/// adds another, refuses a short password naming it, and lists them without their hashes.
#[test]
fn the_demo_seeds_a_dashboard_user_and_admin_users_adds_more() {
    let serve = Serve::start();
    let base = serve.demo["acquirerUrl"].as_str().unwrap().to_string();
    let d = &serve.demo["dashboard"];
    assert_eq!(d["url"].as_str().unwrap(), format!("{base}/dashboard"));
    let (status, page) = dashboard_sign_in(
        &base,
        d["merchantUser"].as_str().unwrap(),
        d["merchantPassword"].as_str().unwrap(),
    );
    assert_eq!(status, 303);
    let page = page.unwrap();
    assert!(
        page.contains("every merchant of SANDBOX_PAYCODE_DEMO"),
        "{page}"
    );
    assert_eq!(dashboard_sign_in(&base, "kopi", "wrong-password-1").0, 401);
    let token = serve.admin_token();
    assert_eq!(dashboard_sign_in(&base, "operator", &token).0, 303);

    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "abc\n").unwrap();
    let add_ginza = |password_file: &Path| {
        serve
            .cmd()
            .args([
                "admin",
                "users",
                "add",
                "ginza",
                "--client",
                "SANDBOX_PAYCODE_DEMO",
            ])
            .args(["--merchant", "M-KOPI-002", "--password-file"])
            .arg(password_file)
            .output()
            .unwrap()
    };
    let out = add_ginza(&short);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("password: needs at least 10 characters"),
        "{}",
        stderr_of(&out)
    );
    let good = dir.path().join("good");
    std::fs::write(&good, "ginza-password\n").unwrap();
    let out = add_ginza(&good);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let (status, page) = dashboard_sign_in(&base, "ginza", "ginza-password");
    assert_eq!(status, 303);
    assert!(
        page.unwrap()
            .contains("merchant M-KOPI-002 of SANDBOX_PAYCODE_DEMO")
    );
    let list = serve
        .cmd()
        .args(["admin", "users", "list"])
        .output()
        .unwrap();
    let text = stdout_of(&list);
    assert!(
        text.contains("\"ginza\"") && text.contains("\"kopi\"") && !text.contains("argon2"),
        "{text}"
    );
}
