//! The customer's wallet app (`paycode wallet …`).

use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct WalletArgs {}

pub async fn run(_data_dir: &Path, _args: WalletArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("paycode wallet is not built yet")
}
