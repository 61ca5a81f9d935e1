//! `vault backup pull` and `vault backup restore`: the BMC side (Redfish / HPE iLO).
use clap::Args;

use super::{CliError, CliResult, Ctx};
use crate::errors::Kind;

#[derive(Args)]
pub struct PullArgs {
    /// BMC base URL, e.g. https://ilo-host
    #[arg(long, value_name = "URL")]
    bmc: Option<String>,
}

#[derive(Args)]
pub struct RestoreArgs {
    #[arg(long, value_name = "ID")]
    id: String,
    #[arg(long, value_name = "URL")]
    bmc: String,
}

pub fn pull(_ctx: &Ctx, _a: PullArgs) -> CliResult {
    Err(CliError::new(
        Kind::Internal,
        "backup pull is not available in this build yet",
    ))
}

pub fn restore(_ctx: &Ctx, _a: RestoreArgs) -> CliResult {
    Err(CliError::new(
        Kind::Internal,
        "backup restore is not available in this build yet",
    ))
}
