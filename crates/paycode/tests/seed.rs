//! `paycode seed` at small scale: the seeded store audits clean, its payments answer
//! inquiryPayment, and a live payment afterwards pays with the books still balanced.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn a_seeded_store_audits_clean_answers_inquiries_and_still_pays() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The demo data is written by the first start; seeding needs the server stopped.
    let mut serve = Serve::start_in(dir, &[]);
    serve.terminate(std::time::Duration::from_secs(30));

    let out = paycode(dir)
        .args([
            "seed",
            "--payments",
            "2000",
            "--days",
            "5",
            "--per-unit",
            "300",
        ])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.starts_with("seeded 2000 payments"), "{stdout}");
    assert!(stdout.contains("10 settlement batches"), "{stdout}");

    // A second run refuses rather than colliding with the first.
    let out = paycode(dir)
        .args(["seed", "--payments", "10", "--days", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("seeded payments already"),
        "{}",
        text(&out.stderr)
    );

    // The report files of the seeded batches, then the audit, on the stopped store.
    let out = paycode(dir).arg("settle").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let n_files = std::fs::read_dir(dir.join("reports").join("settlement"))
        .unwrap()
        .count();
    assert_eq!(n_files, 20, "summary and detail of 10 batches");
    let out = paycode(dir).arg("audit").output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("2000 payments"), "{stdout}");
    assert!(stdout.contains("10 batches"), "{stdout}");

    // Seeded payments answer inquiryPayment, found by their request ids.
    let serve = Serve::start_in(dir, &[]);
    let seeded: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("seeded.json")).unwrap()).unwrap();
    let (first_day, last_day) = (
        seeded["firstDay"].as_i64().unwrap(),
        seeded["lastDay"].as_i64().unwrap(),
    );
    assert_eq!(last_day - first_day, 4);
    for (day, shop, k) in [(first_day, 0, 0), (last_day, 1, 7), (first_day + 2, 0, 150)] {
        let request_id = format!("SEED-{day}-{shop}-{k}");
        let out = serve
            .cmd()
            .args(["pos", "status", "--request-id", &request_id])
            .output()
            .unwrap();
        let stdout = text(&out.stdout);
        let payment_id = stdout
            .lines()
            .find_map(|l| l.strip_prefix("Payment id"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| panic!("{request_id}: {stdout}{}", text(&out.stderr)));
        assert!(payment_id.starts_with('S'), "{payment_id}");
    }

    // A live payment after seeding pays, and the books still balance.
    let user = serve.user("everyday").0;
    let code = serve.code_digits(&user);
    let out = serve
        .cmd()
        .args(["pos", "charge", "7.25", &serve.currency(), "--code", &code])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let out = serve.cmd().arg("audit").output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("2001 payments"), "{stdout}");
}
