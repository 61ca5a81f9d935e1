//! `vault`: an encrypted backup vault with key management for BMC configuration backups.
//!
//! Layering (dependencies point one way): `cli` → domain modules (`keystore`, `store`,
//! `bmc`, `audit`) → `envelope` / `keyfile` → primitives (`secret`, `fsutil`).
//! Only `cli` touches stdout, environment variables and the TTY.

pub mod aead;
pub mod audit;
pub mod bmc;
pub mod cli;
pub mod envelope;
pub mod errors;
pub mod escape;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod hardening;
pub mod keystore;
pub mod secret;
pub mod store;

/// The current time as RFC 3339 UTC with nanoseconds, as ksctl prints `createdAt`.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 formatting of the current time cannot fail")
}

/// The account recorded as creator of keys and archives: the OS user running vault.
pub fn current_account() -> String {
    audit::os_account()
}
