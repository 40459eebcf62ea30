//! `paycode bench`: signed payment load against a running `serve`.

use std::path::Path;

#[derive(clap::Args)]
pub struct BenchArgs {}

pub async fn run(_data_dir: &Path, _args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("paycode bench is not built yet")
}
