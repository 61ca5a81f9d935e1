//! The BMC side: a Redfish client for HPE iLO backup and restore, and an iLO-like
//! simulator for tests and `vault demo`.
//!
//! Invariants (details in each file):
//! - every BMC session this process opens is deleted again on every exit path
//!   (`client`), including Ctrl-C via [`logout_all_live_sessions`];
//! - a download is either a complete `200` binary body within the size cap, or an error:
//!   an error page is never handed to the caller as a backup;
//! - TLS is verified unless the caller explicitly asks for `insecure`;
//! - passwords and session tokens never appear in errors, logs or `Debug` output.
//!
//! `redfish` holds the JSON shapes, bounded parsing and URI rules shared by both sides.
pub mod client;
pub mod error;
pub mod redfish;
pub mod simulator;
pub mod tls;

#[cfg(test)]
mod tests;

pub use client::{
    AuthMode, BackupDownload, BackupFile, BackupService, BmcOptions, BmcSession, ManagerInfo,
    logout_all_live_sessions,
};
pub use error::BmcError;
pub use simulator::{Fault, SimConfig, SimFleet, SimHandle, run_foreground};
