//! `vault demo` and `vault bmc-simulator`.
use clap::Args;

use super::{CliError, CliResult, Ctx};
use crate::errors::Kind;

#[derive(Args)]
pub struct DemoArgs {}

#[derive(Args)]
pub struct SimulatorArgs {}

pub fn run(_ctx: &Ctx, _a: DemoArgs) -> CliResult {
    Err(CliError::new(
        Kind::Internal,
        "demo is not available in this build yet",
    ))
}

pub fn simulator(_ctx: &Ctx, _a: SimulatorArgs) -> CliResult {
    Err(CliError::new(
        Kind::Internal,
        "bmc-simulator is not available in this build yet",
    ))
}
