//! The merchant's POS terminal (`paycode pos …`).

use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct PosArgs {}

pub async fn run(_data_dir: &Path, _args: PosArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("paycode pos is not built yet")
}
