//! `paycode demo`: the whole story against a running `serve`.

use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct DemoArgs {}

pub async fn run(_data_dir: &Path, _args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("paycode demo is not built yet")
}
