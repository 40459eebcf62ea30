//! `paycode settle` and `paycode audit`: the operator's money commands.
//!
//! Both work whether or not `serve` is running. With a running acquirer they go through its
//! admin API (URL from `<data-dir>/demo.json`, token from `<data-dir>/admin-token`), so the one
//! process that owns the store does the work; when nothing answers there, they open the store
//! in the data directory directly. `audit` exits non-zero when any invariant is violated.

use crate::admin_api::{AdminApi, Reached};
use anyhow::Context;
use paycode_acquirer::audit::AuditReport;
use paycode_acquirer::settlement::{SettleOutcome, batch_file_paths, clearing_file_path};
use paycode_acquirer::{Acquirer, AcquirerConfig, Limits};
use paycode_core::{Currency, Money};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// How long a settlement run or an audit may take through the admin API (both stream over the
/// whole store).
const ADMIN_CALL_TIMEOUT: Duration = Duration::from_secs(3_600);

#[derive(clap::Args)]
pub struct SettleArgs {
    /// Close everything up to now, the current business day included (default: only the days
    /// whose cut-off has passed).
    #[arg(long)]
    now: bool,
}

#[derive(clap::Args)]
pub struct AuditArgs {}

/// Opens the acquirer's store in the data directory (when no server is running).
pub(crate) async fn open_store(
    data_dir: &Path,
    database_url: Option<&str>,
) -> anyhow::Result<Acquirer> {
    let db_path = data_dir.join("acquirer.db");
    let postgres = database_url.map(crate::serve::acquirer_pg_target);
    if postgres.is_none() && !db_path.exists() {
        anyhow::bail!(
            "no acquirer store at {} (start `paycode serve` once, or pass --data-dir)",
            db_path.display()
        );
    }
    // The signer is never used: nothing is sent from this process.
    let key = paycode_sign::PrivateKey::generate().context("generating a throwaway key")?;
    Acquirer::open(AcquirerConfig {
        db_path,
        postgres,
        public_url: "http://127.0.0.1".into(),
        client_id_at_wallets: "paycode-acquirer".into(),
        signer: paycode_http::Signer::new(key, 1),
        admin_token: None,
        time_zone: chrono_tz::UTC,
        limits: Limits::default(),
    })
    .await
}

fn amount(minor: i64, currency: &str) -> String {
    match Currency::parse(currency) {
        Ok(c) => Money::new(minor, c).to_string(),
        Err(_) => format!("{minor} {currency} (minor units)"),
    }
}

fn print_outcome(data_dir: &Path, o: &SettleOutcome) {
    let reports = data_dir.join("reports");
    println!(
        "closed {} settlement batch(es) and {} wallet clearing(s); {} new event(s) taken in",
        o.batches.len(),
        o.clearings.len(),
        o.n_swept
    );
    for b in &o.batches {
        let (summary, detail) = batch_file_paths(&reports, &b.batch_id);
        let movement = if b.net_minor < 0 {
            format!("collects {} from", amount(-b.net_minor, &b.currency))
        } else {
            format!("pays {} to", amount(b.net_minor, &b.currency))
        };
        println!(
            "batch {}: {} item(s), {movement} {} for {} ({}, {})",
            b.batch_id,
            b.item_count,
            b.merchant,
            b.settlement_date,
            summary.display(),
            detail.display()
        );
    }
    for c in &o.clearings {
        let movement = if c.net_minor < 0 {
            format!("is owed {}", amount(-c.net_minor, &c.currency))
        } else {
            format!("owes {}", amount(c.net_minor, &c.currency))
        };
        println!(
            "clearing {}: {} item(s), {} {movement} ({})",
            c.clearing_id,
            c.item_count,
            c.wallet,
            clearing_file_path(&reports, &c.clearing_id).display()
        );
    }
}

pub async fn settle(
    data_dir: &Path,
    database_url: Option<&str>,
    args: SettleArgs,
) -> anyhow::Result<ExitCode> {
    if let Some(admin) = AdminApi::from_data_dir(data_dir, ADMIN_CALL_TIMEOUT)? {
        let path = format!("/admin/v1/settlement/close?now={}", args.now);
        if let Reached::Answer(outcome) = admin
            .call_as::<SettleOutcome>(reqwest::Method::POST, &path)
            .await?
        {
            print_outcome(data_dir, &outcome);
            return Ok(ExitCode::SUCCESS);
        }
    }
    let acq = open_store(data_dir, database_url).await?;
    let outcome = if args.now {
        acq.settle_now().await
    } else {
        acq.settle_due(acq.clock().now_ms()).await
    };
    acq.db().close();
    let outcome = outcome.map_err(|e| anyhow::anyhow!("settlement failed: {}", e.message))?;
    print_outcome(data_dir, &outcome);
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(
    data_dir: &Path,
    database_url: Option<&str>,
    _args: AuditArgs,
) -> anyhow::Result<ExitCode> {
    let mut report: Option<AuditReport> = None;
    if let Some(admin) = AdminApi::from_data_dir(data_dir, ADMIN_CALL_TIMEOUT)?
        && let Reached::Answer(r) = admin
            .call_as::<AuditReport>(reqwest::Method::GET, "/admin/v1/audit")
            .await?
    {
        report = Some(r);
    }
    let report = match report {
        Some(r) => r,
        None => {
            let acq = open_store(data_dir, database_url).await?;
            let r = acq.audit_report().await;
            acq.db().close();
            r.map_err(|e| anyhow::anyhow!("the audit could not run: {}", e.message))?
        }
    };
    if report.violations.is_empty() {
        println!("OK: {}", report.summary());
        return Ok(ExitCode::SUCCESS);
    }
    for v in &report.violations {
        println!("{v}");
    }
    eprintln!(
        "FAILED: {}{} violation(s); {}",
        report.violations.len(),
        if report.truncated { "+" } else { "" },
        report.summary()
    );
    Ok(ExitCode::from(1))
}
