//! `vault`: an encrypted backup vault with key management for BMC configuration backups.
//!
//! Layering (dependencies point one way): `cli` → domain modules (`keystore`, `store`,
//! `bmc`, `audit`) → `envelope` / `keyfile` → primitives (`secret`, `fsutil`).
//! Only `cli` touches stdout, environment variables and the TTY.

pub mod bmc;
pub mod cli;
pub mod fsutil;
pub mod secret;
