//! `paycode settle` and `paycode audit` as the binary: through the admin API of a live `serve`,
//! then on the store directly once it is stopped, and the audit's non-zero exit on a corrupted
//! posting.

mod common;

use common::*;

#[test]
fn settle_and_audit_work_with_serve_running_and_without_it() {
    let mut serve = Serve::start();
    let user = serve.user("everyday").0;
    let code = serve.code_digits(&user);
    let currency = serve.demo["currency"].as_str().unwrap().to_string();
    let out = serve
        .cmd()
        .args(["pos", "charge", "12.50", &currency, "--code", &code])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // Through the running server's admin API.
    let out = serve.cmd().arg("audit").output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.starts_with("OK: "), "{stdout}");
    assert!(stdout.contains("1 payments"), "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");

    let out = serve.cmd().args(["settle", "--now"]).output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("closed 1 settlement batch(es) and 1 wallet clearing(s)"),
        "{stdout}"
    );
    let batch_line = stdout
        .lines()
        .find(|l| l.starts_with("batch "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(batch_line.contains("1 item(s)"), "{batch_line}");
    let reports = serve.data_dir().join("reports").join("settlement");
    let files: Vec<String> = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    let detail = files.iter().find(|f| f.ends_with("-detail.csv")).unwrap();
    let detail = std::fs::read_to_string(reports.join(detail)).unwrap();
    assert_eq!(detail.lines().count(), 3, "{detail}");
    assert!(detail.contains(",1250,"), "{detail}");
    assert!(detail.ends_with("<END>\n"));

    // With the server stopped, both open the store directly.
    serve.stop();
    let out = serve.cmd().arg("settle").output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("closed 0 settlement batch(es)"),
        "{stdout}"
    );
    let out = serve.cmd().arg("audit").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("1 batches"),
        "{}",
        text(&out.stdout)
    );

    // A corrupted posting makes the audit fail, naming the rows, one per line.
    let db = acquirer_store(serve.data_dir());
    let n = db
        .write_blocking(|c| {
            c.execute(
                "UPDATE postings SET amount_minor = amount_minor + 1 WHERE entry_id = \
                 (SELECT MIN(entry_id) FROM journal_entries WHERE payment_id IS NOT NULL) \
                 AND idx = 0",
                [],
            )
            .map_err(paycode_db::DbError::from)
        })
        .unwrap();
    assert_eq!(n, 1);
    db.close();
    drop(db);
    let out = serve.cmd().arg("audit").output().unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("journal_entries ") && l.contains("does not balance")),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("payments ")),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).starts_with("FAILED: "),
        "{}",
        text(&out.stderr)
    );
}
