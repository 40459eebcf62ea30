//! The real binary under load, for as long as asked: `kill -9` of `serve` in the middle of a
//! `paycode bench` run, round after round, and a soak at a steady rate with the process's
//! memory, descriptors and outbox watched. Sized by the environment so that CI runs a short
//! version and a developer the long one (see BENCHMARKS.md):
//!
//! - `PAYCODE_CRASH_ROUNDS` (default 3): kill rounds;
//! - `PAYCODE_SOAK_S` (default 60), `PAYCODE_SOAK_RATE` (payments/s, default 40) and
//!   `PAYCODE_SOAK_SAMPLE_S` (default 5): the soak.

mod common;

use common::{BIN, Serve};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A running `paycode bench` and what it has written to stderr.
struct Bench {
    child: Child,
    stderr: std::thread::JoinHandle<String>,
}

/// `paycode bench` against `dir`'s serve, with `args`; returns once it is sending payments
/// (its stderr says so).
fn start_bench(dir: &Path, args: &[&str]) -> Bench {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .arg("bench")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (sending, sending_rx) = std::sync::mpsc::channel();
    // Read stderr to its end, so that the bench never writes into a closed pipe.
    let stderr = std::thread::spawn(move || {
        let mut all = String::new();
        for line in stderr.lines().map_while(Result::ok) {
            if line.starts_with("running ") {
                let _ = sending.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    if sending_rx.recv().is_err() {
        let _ = child.wait();
        panic!(
            "bench ended before sending payments:\n{}",
            stderr.join().unwrap()
        );
    }
    Bench { child, stderr }
}

/// Waits for the bench to end; its stdout.
fn finish(bench: Bench) -> String {
    let out = bench.child.wait_with_output().unwrap();
    let stderr = bench.stderr.join().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "bench failed:\n{stdout}{stderr}");
    stdout
}

/// `paycode bench-verify` of `record`, repeated while payments are still being resolved
/// (reconciliation after a crash); its output once nothing is in process.
fn verify(serve: &Serve, record: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = serve
            .cmd()
            .arg("bench-verify")
            .arg(record)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "bench-verify found a violation:\n{text}"
        );
        if !text.contains("PROCESSING") {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "payments stayed in process:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// (sent, acknowledged paid, paid in all in minor units) from bench-verify's report.
fn verified(text: &str) -> (u64, u64, i64) {
    let num_before = |marker: &str| -> u64 {
        let at = text
            .find(marker)
            .unwrap_or_else(|| panic!("{marker}: {text}"));
        text[..at]
            .split_whitespace()
            .last()
            .unwrap()
            .parse()
            .unwrap()
    };
    let paid: i64 = text
        .split(" = ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no paid total: {text}"));
    (
        num_before(" payment(s) sent"),
        num_before(" acknowledged paid"),
        paid,
    )
}

/// The bench user's balance at the merchant-currency wallet, in minor units.
async fn balance(serve: &Serve, user: &str) -> i64 {
    let currency = serve.currency();
    let wallet = serve.demo["wallets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["currency"] == currency.as_str())
        .unwrap();
    let url = format!("{}/admin/v1/users/{user}", wallet["url"].as_str().unwrap());
    let v: Value = common::get_json(&url, &serve.admin_token()).await;
    v["balance"]["value"].as_str().unwrap().parse().unwrap()
}

fn record_user(record: &Path) -> String {
    let text = std::fs::read_to_string(record).unwrap();
    text.lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(5)
        .unwrap()
        .to_string()
}

fn audit_clean(serve: &Serve) {
    let out = serve.cmd().arg("audit").output().unwrap();
    assert!(
        out.status.success(),
        "audit after restart:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const DEVICES: i64 = 2_000;
const AMOUNT_MINOR: i64 = 10; // the bench's default 0.10

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_bench_load_round_after_round_loses_no_acknowledged_payment() {
    let rounds = env_num("PAYCODE_CRASH_ROUNDS", 3);
    let dir = tempfile::tempdir().unwrap();
    let env = [("PAYCODE_RECONCILE_INTERVAL_MS", "500")];
    let mut serve = Serve::start_in(dir.path(), &env);
    let (mut total_sent, mut total_acked) = (0, 0);
    let mut records = Vec::new();
    for round in 0..rounds {
        let record = dir.path().join(format!("round-{round}.txt"));
        let bench = start_bench(
            dir.path(),
            &[
                "--clients",
                "8",
                "--duration-s",
                "6",
                "--devices",
                &DEVICES.to_string(),
                "--record",
                record.to_str().unwrap(),
            ],
        );
        // The kill lands at a different point of each round's load.
        std::thread::sleep(Duration::from_millis(700 + 450 * (round % 5)));
        serve.stop(); // SIGKILL, wallets and acquirer together
        finish(bench);
        serve = Serve::start_in(dir.path(), &env);
        audit_clean(&serve);
        let report = verify(&serve, &record);
        let (sent, acked, paid_minor) = verified(&report);
        assert!(
            acked > 0,
            "round {round}: nothing was paid before the kill:\n{report}"
        );
        // The wallet debited the bench user exactly what the acquirer says was paid.
        let debited = AMOUNT_MINOR * (DEVICES + 1) - balance(&serve, &record_user(&record)).await;
        assert_eq!(debited, paid_minor, "round {round}:\n{report}");
        eprintln!("round {round}: {sent} sent, {acked} acknowledged paid, none lost");
        (total_sent, total_acked) = (total_sent + sent, total_acked + acked);
        records.push(record);
    }
    // Every earlier round's acknowledgements survived the later crashes too.
    for record in &records {
        verify(&serve, record);
    }
    eprintln!("{rounds} rounds: {total_sent} sent, {total_acked} acknowledged paid, 0 lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_at_a_steady_rate_keeps_descriptors_and_outbox_flat_and_loses_nothing() {
    let (seconds, rate, every) = (
        env_num("PAYCODE_SOAK_S", 60),
        env_num("PAYCODE_SOAK_RATE", 40),
        env_num("PAYCODE_SOAK_SAMPLE_S", 5),
    );
    let serve = Serve::start();
    let record = serve.data_dir().join("soak.txt");
    let bench = start_bench(
        serve.data_dir(),
        &[
            "--clients",
            "16",
            "--rate",
            &rate.to_string(),
            "--duration-s",
            &seconds.to_string(),
            "--sample-every-s",
            &every.to_string(),
            "--record",
            record.to_str().unwrap(),
        ],
    );
    let out = finish(bench);
    println!("{out}");
    // The samples: t, paid/s, p50, p99, errors, rss MiB, fds, outbox.
    let rows: Vec<Vec<f64>> = out
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("t s"))
        .skip(1)
        .take_while(|l| l.split_whitespace().count() == 8)
        .map(|l| {
            l.split_whitespace()
                // `-`: not reported yet (the outbox gauge is set on the first reload tick).
                .map(|f| match f {
                    "-" => f64::NAN,
                    f => f.parse().unwrap_or_else(|_| panic!("{l}")),
                })
                .collect()
        })
        .collect();
    assert!(rows.len() >= 4, "too few samples:\n{out}");
    let col = |i: usize| rows.iter().map(|r| r[i]).collect::<Vec<_>>();
    assert!(
        col(4).iter().all(|e| *e == 0.0),
        "errors under a steady load:\n{out}"
    );
    let q = rows.len() / 4;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (fds, rss) = (col(6), col(5));
    assert!(
        fds.iter().chain(&rss).all(|v| !v.is_nan()),
        "the acquirer reports its memory and descriptors in /metrics:\n{out}"
    );
    // A leak of one descriptor per payment or per notification would be thousands.
    assert!(
        mean(&fds[rows.len() - q..]) <= mean(&fds[..q]) + 16.0,
        "open descriptors grew:\n{out}"
    );
    assert!(
        mean(&rss[rows.len() - q..]) <= 1.5 * mean(&rss[..q]) + 32.0,
        "memory grew:\n{out}"
    );
    // Notifications keep up: the outbox never holds more than a few seconds of payments.
    assert!(
        col(7)
            .iter()
            .filter(|d| !d.is_nan())
            .all(|d| *d <= (rate * 10) as f64),
        "the outbox fell behind:\n{out}"
    );
    let report = verify(&serve, &record);
    let (sent, acked, _) = verified(&report);
    assert!(
        sent > 0 && acked == sent,
        "every payment of a steady soak is paid:\n{report}"
    );
}
