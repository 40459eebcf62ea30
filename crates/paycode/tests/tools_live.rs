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

fn code_digits(serve: &Serve, user: &str) -> String {
    let out = serve
        .cmd()
        .args(["wallet", "code", "--user", user, "--digits"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "wallet code failed: {}",
        stderr_of(&out)
    );
    let digits = stdout_of(&out).trim().to_string();
    assert_eq!(digits.len(), 24, "{digits:?}");
    assert!(digits.bytes().all(|b| b.is_ascii_digit()));
    digits
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
    let digits = code_digits(&serve, &user);
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
    let digits = code_digits(&serve, &user);
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
    let digits = code_digits(&serve, &user);
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
    let digits = code_digits(&serve, &user);
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
    let digits = code_digits(&serve, &user);
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
