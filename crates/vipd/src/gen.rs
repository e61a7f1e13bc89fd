//! `vipd gen`: placeholder, being written.
use clap::Args;
use std::process::ExitCode;
#[derive(Args, Debug)]
pub struct GenArgs {}
pub fn run(_a: GenArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("gen: not built yet")
}
