//! `vipd lab`: placeholder replaced below.
use clap::Args;
use std::process::ExitCode;
#[derive(Args, Debug)]
pub struct LabArgs {}
pub fn run(_a: LabArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("lab: not built yet")
}
