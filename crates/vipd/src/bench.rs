//! `vipd bench`: being written.
use clap::Args;
use std::process::ExitCode;
#[derive(Args, Debug)]
pub struct BenchArgs {}
pub fn run(_a: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("bench: not built yet")
}
