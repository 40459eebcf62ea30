//! The `paycode` binary: a thin layer of commands over the library crates.
//!
//! - `serve`: the acquirer and the demo wallets (or one of them with `--role`).
//! - `pos`: the merchant's POS terminal. `wallet`: the customer's phone app. `demo`: the story.
//! - `bench`: signed payment load against a running `serve`.
//! - `seed`: past payments written into a store, for measuring a store with history.
//!
//! Every error reaches the user as one line (what, why, what to do); nothing panics.

mod admin_api;
mod admin_cmd;
mod app;
mod app_device;
mod bench;
mod bench_dashboard;
mod bench_verify;
mod bench_watch;
mod config_file;
mod config_schema;
mod demo;
mod demo_file;
mod money_cmd;
mod mpp_check;
mod pos;
mod pos_receipt;
mod pos_schedule;
mod render;
mod risk_file;
mod seed;
mod serve;
mod tools_common;

use clap::{Parser, Subcommand};

/// mimalloc: the request path allocates many small short-lived buffers (JSON, headers, SQL
/// values) across threads; glibc malloc took about 5% of the server's CPU in the profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "paycode",
    version,
    about = "User-presented mode payments: acquirer, wallets, POS and customer app"
)]
struct Cli {
    /// Data directory (store, keys, demo.json).
    #[arg(
        long,
        global = true,
        env = "PAYCODE_DATA_DIR",
        default_value = "paycode-data"
    )]
    data_dir: PathBuf,
    /// Keep the stores in this PostgreSQL database (postgres://USER@HOST:PORT/DATABASE)
    /// instead of SQLite files in the data directory: the acquirer in schema `acquirer`, each
    /// demo wallet in `wallet_NAME`. The database must exist; paycode creates its tables.
    #[arg(long, global = true, env = "PAYCODE_DATABASE_URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the acquirer and the demo wallets (demo data on first start).
    Serve(serve::ServeArgs),
    /// The merchant's POS terminal.
    Pos(pos::PosArgs),
    /// The customer's wallet app.
    Wallet(app::WalletArgs),
    /// Narrate the whole story against a running `serve`.
    Demo(demo::DemoArgs),
    /// Drive signed pay calls against a running `serve` and print throughput and latency.
    Bench(bench::BenchArgs),
    /// Check a `bench --record` file against the acquirer: no acknowledged payment lost.
    BenchVerify(bench_verify::VerifyArgs),
    /// Time the dashboard's pages against a running `serve`, signed in as the operator.
    BenchDashboard(bench_dashboard::DashboardBenchArgs),
    /// Close settlement batches and wallet clearings, writing their report files.
    Settle(money_cmd::SettleArgs),
    /// Re-check every money invariant from the store; exits non-zero on any violation.
    Audit(money_cmd::AuditArgs),
    /// Write past payments with their whole history into the store (stop `serve` first).
    Seed(seed::SeedArgs),
    /// Run the MPP protocol's scenarios against a wallet endpoint (the wallet conformance kit).
    MppCheck(mpp_check::CheckArgs),
    /// Operator commands over a running acquirer's admin API (risk rules, dry runs, blocks).
    Admin(admin_cmd::AdminArgs),
}

fn main() -> ExitCode {
    // Usage errors exit 1: exit code 2 means "payment failed" for the POS.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(1),
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(70);
        }
    };
    let database_url = cli.database_url.as_deref().filter(|u| !u.is_empty());
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(&cli.data_dir, database_url, args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Pos(args) => pos::run(&cli.data_dir, args).await,
            Command::Wallet(args) => app::run(&cli.data_dir, args).await,
            Command::Demo(args) => demo::run(&cli.data_dir, args).await,
            Command::Bench(args) => bench::run(&cli.data_dir, args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::BenchVerify(args) => bench_verify::run(&cli.data_dir, args).await,
            Command::BenchDashboard(args) => bench_dashboard::run(&cli.data_dir, args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Settle(args) => money_cmd::settle(&cli.data_dir, database_url, args).await,
            Command::Audit(args) => money_cmd::audit(&cli.data_dir, database_url, args).await,
            Command::Seed(args) => seed::run(&cli.data_dir, database_url, args).await,
            Command::MppCheck(args) => mpp_check::run(args).await,
            Command::Admin(args) => admin_cmd::run(&cli.data_dir, args)
                .await
                .map(|()| ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line: the chain of contexts, outermost first.
            let msg = e
                .chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": ");
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}
