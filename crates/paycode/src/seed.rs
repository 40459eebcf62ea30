//! `paycode seed`: writes past payments into an existing store, for measuring the service on a
//! store with years of history. The rows go through the acquirer's store functions (see
//! `paycode_acquirer::history`), a few thousand payments per unit of work; the command only
//! parses its arguments, opens the store and prints progress.

use anyhow::Context;
use paycode_acquirer::history::{SeedOptions, SeedProgress};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct SeedArgs {
    /// Past payments to write.
    #[arg(long)]
    payments: u64,
    /// Business days they are spread over, ending two days before today.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Payments per unit of work (one transaction each).
    #[arg(long, default_value_t = 4_000)]
    per_unit: usize,
}

/// Progress lines at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

fn line(p: &SeedProgress) -> String {
    format!(
        "{} payments, {} rows in {:.0} s: {:.0} payments/s, {:.0} rows/s",
        p.n_payments,
        p.n_rows,
        p.elapsed.as_secs_f64(),
        p.payments_per_s(),
        p.rows_per_s()
    )
}

pub async fn run(
    data_dir: &Path,
    database_url: Option<&str>,
    args: SeedArgs,
) -> anyhow::Result<ExitCode> {
    if args.payments == 0 {
        anyhow::bail!("--payments must be positive");
    }
    let acq = crate::money_cmd::open_store(data_dir, database_url)
        .await
        .context("opening the acquirer's store (stop `paycode serve` while seeding)")?;
    eprintln!(
        "seeding {} payments over {} days into the acquirer's store …",
        args.payments, args.days
    );
    let mut last = Instant::now();
    let result = acq
        .seed_history(
            &SeedOptions {
                n_payments: args.payments,
                n_days: args.days,
                payments_per_unit: args.per_unit,
            },
            |p| {
                if last.elapsed() >= PROGRESS_EVERY {
                    last = Instant::now();
                    eprintln!("  {}", line(p));
                }
            },
        )
        .await;
    acq.db().close();
    let summary = result.map_err(|e| anyhow::anyhow!("seeding failed: {}", e.message))?;
    println!("seeded {}", line(&summary.progress));
    println!(
        "  {} refunds, {} settlement batches, {} clearings, days {} to {}",
        summary.n_refunds,
        summary.n_batches,
        summary.n_clearings,
        paycode_core::settlement::iso_date(summary.days.0),
        paycode_core::settlement::iso_date(summary.days.1)
    );
    // For `paycode bench --inquiry`: which seeded payments exist.
    let seeded = serde_json::json!({
        "firstDay": summary.days.0,
        "lastDay": summary.days.1,
        "nShops": summary.n_shops,
        "perDayMin": summary.per_day_min,
    });
    let path = data_dir.join("seeded.json");
    std::fs::write(&path, seeded.to_string())
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "next: `paycode settle` writes the seeded batches' report files, `paycode audit` checks the store"
    );
    Ok(ExitCode::SUCCESS)
}
