//! `vault audit …`: the operations log and archive sweeps.
use clap::Subcommand;

use super::{CliError, CliResult, Ctx};
use crate::errors::Kind;

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check the hash chain of the audit log.
    Verify,
}

pub fn run(_ctx: &Ctx, _c: AuditCmd) -> CliResult {
    Err(CliError::new(
        Kind::Internal,
        "audit is not available in this build yet",
    ))
}
