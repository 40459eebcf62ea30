//! `paycode serve`: the acquirer and the demo wallets in one process.

use std::path::Path;

#[derive(clap::Args)]
pub struct ServeArgs {}

pub async fn run(_data_dir: &Path, _args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("paycode serve is not built yet")
}
